/**
 * A small MCP server protected by the guard: the v1 SDK's McpServer over stateless Streamable HTTP on
 * node:http. Run it with `OAUTH_ISSUER_URL=https://your-idp/ node examples/protected-server.ts`; `PORT`
 * (default 3000) and `MCP_URL` (the canonical URL clients use, default http://localhost:$PORT/mcp) are
 * optional, as is `OAUTH_AUDIENCE`.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import * as z from 'zod'
import { guardNodeHandler } from '../src/guard/adapters/node.ts'
import {
  createGuard,
  type GuardOptions,
  guardOptionsFromEnv,
  resourceMetadataUrl,
} from '../src/guard/index.ts'

export interface ProtectedServer {
  /** The canonical MCP URL: the guard's resource. */
  url: string
  server: Server
  /** How many times each tool handler ran. */
  toolCalls: Record<'whoami' | 'echo', number>
  close(): Promise<void>
}

export interface ProtectedServerOptions {
  port: number
  /** The canonical MCP URL; default `http://localhost:<port>/mcp`, with the port actually bound. */
  url?: string
  /** Options, or a function of the MCP URL when it is known only once the port is bound. */
  guardOptions: GuardOptions | ((url: string) => GuardOptions | Promise<GuardOptions>)
}

function createMcpServer(toolCalls: ProtectedServer['toolCalls']): McpServer {
  const mcp = new McpServer({ name: 'gatehouse-example', version: '0.1.0' })
  mcp.registerTool(
    'whoami',
    { description: 'Who the verified access token says the caller is' },
    async (extra) => {
      toolCalls.whoami++
      const auth = extra.authInfo
      const identity = {
        subject: auth?.extra?.subject,
        clientId: auth?.clientId,
        scopes: auth?.scopes,
      }
      return { content: [{ type: 'text', text: JSON.stringify(identity) }], structuredContent: identity }
    },
  )
  mcp.registerTool(
    'echo',
    { description: 'Returns its input', inputSchema: { text: z.string() } },
    async ({ text }) => {
      toolCalls.echo++
      return { content: [{ type: 'text', text }] }
    },
  )
  return mcp
}

export async function startProtectedServer(options: ProtectedServerOptions): Promise<ProtectedServer> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(`port ${options.port} is in use: set PORT to a free port (PORT=0 picks one)`)
          : error,
      ),
    )
    server.listen(options.port, resolve)
  })
  const url = options.url ?? `http://localhost:${(server.address() as AddressInfo).port}/mcp`
  const toolCalls = { whoami: 0, echo: 0 }
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  try {
    const guardOptions =
      typeof options.guardOptions === 'function' ? await options.guardOptions(url) : options.guardOptions
    const guard = await createGuard(guardOptions)
    const mcpPath = new URL(url).pathname
    server.on(
      'request',
      guardNodeHandler(guard, async (req, res) => {
        if ((req.url ?? '/').split('?')[0] !== mcpPath) {
          res.writeHead(404).end()
          return
        }
        // Stateless: a fresh server and transport per request, closed with the response.
        const mcp = createMcpServer(toolCalls)
        const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined })
        res.on('close', () => {
          void transport.close()
          void mcp.close()
        })
        await mcp.connect(transport)
        await transport.handleRequest(req, res)
      }),
    )
  } catch (error) {
    await close()
    throw error
  }
  return { url, server, toolCalls, close }
}

if (import.meta.main) {
  const port = Number(process.env.PORT ?? 3000)
  try {
    // Without MCP_URL the URL has the port actually bound, so PORT=0 (any free port) names a reachable one.
    const running = await startProtectedServer({
      port,
      ...(process.env.MCP_URL ? { url: process.env.MCP_URL } : {}),
      guardOptions: (url) => guardOptionsFromEnv(process.env, url),
    })
    console.log(`MCP server on ${running.url}, metadata on ${resourceMetadataUrl(running.url)}`)
  } catch (error) {
    console.error(error instanceof Error ? error.message : error)
    process.exitCode = 1
  }
}
