import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A real HTTP server playing misbehaving or inspectable MCP upstreams, one per path: `/record` answers
 * every request and keeps its headers, `/hang` never answers, `/garbage` answers 200 with broken JSON,
 * `/truncated` breaks the connection in the middle of a JSON answer.
 * `received` lists every request that reached it, on any path, as it arrives: a refusal test asserts it
 * stayed empty.
 */
export async function startOddUpstream(): Promise<{
  url(path: 'record' | 'hang' | 'garbage' | 'truncated'): string
  seen: IncomingHttpHeaders[]
  received: { method: string; path: string }[]
  close(): Promise<void>
}> {
  const seen: IncomingHttpHeaders[] = []
  const received: { method: string; path: string }[] = []
  const server = createServer(async (req, res) => {
    received.push({ method: req.method ?? '', path: req.url ?? '' })
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    if (req.url === '/hang') return
    if (req.url === '/truncated') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' })
      res.write('{"jsonrpc": "2.0",', () => res.destroy())
      return
    }
    if (req.url === '/garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc": "2.0", "result": ')
      return
    }
    seen.push(req.headers)
    const message = JSON.parse(Buffer.concat(chunks).toString() || '{}') as { id?: number; method?: string }
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (message.method === 'initialize') headers['mcp-session-id'] = randomUUID()
    res.writeHead(200, headers).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: {} }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: (path) => `http://127.0.0.1:${port}/${path}`,
    seen,
    received,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/**
 * A small Streamable HTTP MCP upstream whose tools misbehave on purpose, by name: `slow` answers on an SSE
 * stream after `arguments.ms`, `hang` opens an SSE stream and never answers, `silent` never sends even
 * headers, `garbage` sends an SSE event that is not JSON-RPC and keeps the stream open. `started(name)`
 * resolves once a call of that tool has arrived.
 */
export async function startToolUpstream(): Promise<{
  url: string
  started(name: string): Promise<void>
  close(): Promise<void>
}> {
  const arrived: string[] = []
  const waiters: [string, () => void][] = []
  const server = createServer(async (req, res) => {
    if (req.method === 'DELETE') return void res.writeHead(200).end()
    if (req.method !== 'POST') return void res.writeHead(405, { allow: 'POST, DELETE' }).end()
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const message = JSON.parse(Buffer.concat(chunks).toString()) as {
      id?: number | string
      method?: string
      params?: { name?: string; arguments?: { ms?: number } }
    }
    if (message.id === undefined) return void res.writeHead(202).end()
    const answer = (result: unknown) => JSON.stringify({ jsonrpc: '2.0', id: message.id, result })
    if (message.method !== 'tools/call') {
      const result =
        message.method === 'initialize'
          ? {
              protocolVersion: '2025-06-18',
              capabilities: { tools: {} },
              serverInfo: { name: 'odd', version: '1' },
            }
          : { tools: [] }
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (message.method === 'initialize') headers['mcp-session-id'] = randomUUID()
      return void res.writeHead(200, headers).end(answer(result))
    }
    const name = message.params?.name ?? ''
    arrived.push(name)
    for (const [wanted, resolve] of waiters) if (wanted === name) resolve()
    if (name === 'silent') return
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.flushHeaders()
    if (name === 'slow') {
      const text = answer({ content: [{ type: 'text', text: 'slow done' }] })
      setTimeout(() => res.end(`event: message\ndata: ${text}\n\n`), message.params?.arguments?.ms)
    } else if (name === 'garbage') {
      res.write('event: message\ndata: this is not JSON-RPC\n\n')
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    started: (name) =>
      arrived.includes(name) ? Promise.resolve() : new Promise((resolve) => waiters.push([name, resolve])),
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

export interface ScriptedRequest {
  method: string
  headers: IncomingHttpHeaders
  body: string
}

/**
 * An upstream the test scripts: `answer` (replaced by each test) writes the response to every request, raw,
 * so that a test can compare bytes; `requests` records each request (headers as Node parsed them) as it
 * arrives. The default answer is an empty JSON-RPC result.
 */
export async function startScriptedUpstream(): Promise<{
  url: string
  requests: ScriptedRequest[]
  answer: (request: ScriptedRequest, res: ServerResponse) => void
  close(): Promise<void>
}> {
  const upstream = {
    url: '',
    requests: [] as ScriptedRequest[],
    answer: (request: ScriptedRequest, res: ServerResponse) => {
      const { id } = JSON.parse(request.body || '{}') as { id?: number }
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ jsonrpc: '2.0', id, result: {} }))
    },
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const request = { method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() }
    upstream.requests.push(request)
    upstream.answer(request, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`
  return upstream
}
