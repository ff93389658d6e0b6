import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A minimal 2026-07-28 MCP server over HTTP: `server/discover`, `tools/list` and an `echo` tool, every
 * result in the stateless form. It keeps the headers of each POST, to see what the gateway forwarded.
 */
export async function startStatelessUpstream(): Promise<{
  url: string
  seen: IncomingHttpHeaders[]
  close(): Promise<void>
}> {
  const seen: IncomingHttpHeaders[] = []
  const server = createServer(async (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end()
      return
    }
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    seen.push(req.headers)
    const message = JSON.parse(Buffer.concat(chunks).toString()) as {
      id?: number | string
      method: string
      params?: { arguments?: { message?: string } }
    }
    if (message.id === undefined) {
      res.writeHead(202).end()
      return
    }
    const results: Record<string, unknown> = {
      'server/discover': {
        supportedVersions: ['2026-07-28'],
        capabilities: { tools: {} },
        _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'stateless', version: '1' } },
      },
      'tools/list': {
        tools: [{ name: 'echo', inputSchema: { type: 'object' } }],
        ttlMs: 0,
        cacheScope: 'private',
      },
      'tools/call': { content: [{ type: 'text', text: `Echo: ${message.params?.arguments?.message}` }] },
    }
    const result = results[message.method]
    const body =
      result === undefined
        ? { jsonrpc: '2.0', id: message.id, error: { code: -32601, message: 'method not found' } }
        : { jsonrpc: '2.0', id: message.id, result: { resultType: 'complete', ...(result as object) } }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    seen,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}
