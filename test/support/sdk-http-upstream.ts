import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { z } from 'zod'

/**
 * A stateful Streamable HTTP MCP server built on the MCP SDK, in process: one SDK transport per session, as
 * the SDK's own example keeps them. Its one tool, `echo`, records each call with the subject the gateway
 * named (`X-Gatehouse-Subject`), so a refusal test can show a call never arrived.
 */
export async function startSdkHttpUpstream(): Promise<{
  url: string
  calls: { message: string; subject: string | undefined; session: string | undefined }[]
  close(): Promise<void>
}> {
  const calls: { message: string; subject: string | undefined; session: string | undefined }[] = []
  const transports = new Map<string, StreamableHTTPServerTransport>()
  const server = createServer(async (req, res) => {
    const id = req.headers['mcp-session-id']
    let transport = typeof id === 'string' ? transports.get(id) : undefined
    if (transport === undefined && id !== undefined) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }),
      )
      return
    }
    if (transport === undefined) {
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        onsessioninitialized: (sessionId) => void transports.set(sessionId, created),
      })
      created.onclose = () => {
        if (created.sessionId !== undefined) transports.delete(created.sessionId)
      }
      const mcp = new McpServer({ name: 'sdk-upstream', version: '1.0.0' })
      mcp.registerTool(
        'echo',
        { description: 'Echoes the message', inputSchema: { message: z.string() } },
        async ({ message }, extra) => {
          const subject = extra.requestInfo?.headers['x-gatehouse-subject']
          calls.push({
            message,
            subject: typeof subject === 'string' ? subject : undefined,
            session: extra.sessionId,
          })
          return { content: [{ type: 'text', text: `Echo: ${message}` }] }
        },
      )
      await mcp.connect(created)
      transport = created
    }
    await transport.handleRequest(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    calls,
    close: async () => {
      for (const transport of transports.values()) await transport.close()
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}
