import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
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
