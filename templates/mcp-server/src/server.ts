/**
 * An MCP server whose every request passes the Gatehouse guard first: no valid access token, no MCP.
 * Add your tools in createMcpServer; the caller's verified identity is `extra.authInfo` in each handler.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { createGuard, type GuardOptions } from 'mcp-gatehouse/guard'
import { guardNodeHandler } from 'mcp-gatehouse/guard/node'
import * as z from 'zod'

export interface ServerOptions {
  /** 0 picks a free port. */
  port: number
  /** The URL clients use; default http://localhost:<port>/mcp, with the port actually bound. */
  url?: string
  /** The guard's options for that URL: which provider's tokens it accepts. */
  guardOptions: (url: string) => GuardOptions
}

export interface RunningServer {
  url: string
  close(): Promise<void>
}

function createMcpServer(): McpServer {
  const mcp = new McpServer({ name: '{{name}}', version: '0.1.0' })
  mcp.registerTool('whoami', { description: 'Who the access token says the caller is' }, async (extra) => {
    const identity = { subject: extra.authInfo?.extra?.subject, scopes: extra.authInfo?.scopes }
    return { content: [{ type: 'text', text: JSON.stringify(identity) }], structuredContent: identity }
  })
  mcp.registerTool(
    'echo',
    { description: 'Returns its input', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  )
  return mcp
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, resolve)
  })
  const url = options.url ?? `http://localhost:${(server.address() as AddressInfo).port}/mcp`
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  try {
    // The guard reads the provider's metadata now: a wrong issuer stops the start, not the first request.
    const guard = await createGuard(options.guardOptions(url))
    const mcpPath = new URL(url).pathname
    // The guard answers the metadata at /.well-known/oauth-protected-resource itself.
    const handler = guardNodeHandler(guard, async (req, res) => {
      if ((req.url ?? '/').split('?')[0] !== mcpPath) {
        res.writeHead(404).end()
        return
      }
      // Stateless: a fresh server and transport per request, closed with the response.
      const mcp = createMcpServer()
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined })
      res.on('close', () => {
        void transport.close()
        void mcp.close()
      })
      await mcp.connect(transport)
      await transport.handleRequest(req, res)
    })
    server.on('request', handler)
  } catch (error) {
    await close()
    throw error
  }
  return { url, close }
}
