import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { guardNodeHandler } from '../../src/guard/adapters/node.ts'
import { createGuard, type Guard } from '../../src/guard/index.ts'

export interface ExchangeApi {
  /** Its MCP URL: what the gateway forwards to. */
  url: string
  /** The headers of every request that reached it, refused or not. */
  seen: IncomingHttpHeaders[]
  /** Tool calls its handler ran: only requests whose token passed its guard. */
  calls: number
  /** Trusts this issuer from now on (the embedded one is known only once the gateway listens). */
  trust(issuer: string): void
  close(): Promise<void>
}

/**
 * The internal API behind the gateway in `exchange` mode: an MCP server (the SDK's, stateless) whose own
 * guard accepts only tokens for `audience` from the trusted issuer, with `scope` when given. Its `whoami`
 * tool answers what the token says: `sub`, `aud`, `scope`, `act`, `client_id`.
 */
export async function startExchangeApi(audience: string, scope?: string): Promise<ExchangeApi> {
  let guard: Promise<Guard> | undefined
  const api: ExchangeApi = {
    url: '',
    seen: [],
    calls: 0,
    trust: (issuer) => {
      guard = createGuard({
        resource: audience,
        authorizationServers: [{ issuer }],
        ...(scope ? { scopes: [scope] } : {}),
      })
    },
    close: async () => {},
  }
  const server = createServer(async (req, res) => {
    api.seen.push(req.headers)
    if (!guard) return void res.writeHead(503).end()
    await guardNodeHandler(await guard, async (authed, response) => {
      const mcp = new McpServer({ name: 'orders-api', version: '1.0.0' })
      mcp.registerTool('whoami', { description: 'what the token says' }, async (extra) => {
        api.calls++
        const claims = (extra.authInfo?.extra?.claims ?? {}) as Record<string, unknown>
        const said = {
          sub: claims.sub,
          aud: claims.aud,
          scope: claims.scope,
          act: claims.act,
          client_id: claims.client_id,
        }
        return { content: [{ type: 'text', text: JSON.stringify(said) }], structuredContent: said }
      })
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined })
      response.on('close', () => {
        void transport.close()
        void mcp.close()
      })
      await mcp.connect(transport)
      await transport.handleRequest(authed, response)
    })(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  api.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`
  api.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return api
}
