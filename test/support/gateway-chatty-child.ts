/**
 * A stdio MCP server built with the SDK's McpServer that speaks on its own at awkward times, for the shared
 * child tests: a log line, a resource update or an elicitation or sampling request during a tool call or
 * after it has been answered, progress for a request already answered, a list change with data in it. Each
 * carries the `secret` the caller passed, so a test can tell whose it is. `seen-initialize` returns every
 * `initialize` the process received (what a client could have made it believe about its clients).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js'
import { z } from 'zod'

const server = new McpServer(
  { name: 'chatty', version: '1' },
  { capabilities: { logging: {}, resources: { subscribe: true }, tools: { listChanged: true } } },
)
const seenInitialize: unknown[] = []
const text = (value: unknown) => ({ content: [{ type: 'text' as const, text: JSON.stringify(value) }] })
const notify = (notification: ServerNotification) => server.server.notification(notification)

/** What the client answered, or the error the request got: whatever reached this tool. */
async function ask(request: ServerRequest): Promise<unknown> {
  const schema = request.method === 'elicitation/create' ? ElicitResultSchema : CreateMessageResultSchema
  try {
    return { answer: await server.server.request(request, schema) }
  } catch (error) {
    return { error: (error as Error).message }
  }
}

const elicitation = (secret: string): ServerRequest => ({
  method: 'elicitation/create',
  params: { message: secret, requestedSchema: { type: 'object', properties: {} } },
})
const sampling = (secret: string): ServerRequest => ({
  method: 'sampling/createMessage',
  params: { messages: [{ role: 'user', content: { type: 'text', text: secret } }], maxTokens: 5 },
})
const chatter = (secret: string) =>
  Promise.all([
    notify({ method: 'notifications/message', params: { level: 'info', data: secret } }),
    notify({ method: 'notifications/resources/updated', params: { uri: `memo://${secret}` } }),
    ask(elicitation(secret)),
    ask(sampling(secret)),
  ])

const secretOnly = { secret: z.string() }
const later = { secret: z.string(), delayMs: z.number() }

server.registerTool('seen-initialize', {}, async () => text(seenInitialize))

server.registerTool('elicit', { inputSchema: secretOnly }, async ({ secret }) =>
  text(await ask(elicitation(secret))),
)

server.registerTool('sample', { inputSchema: secretOnly }, async ({ secret }) =>
  text(await ask(sampling(secret))),
)

server.registerTool('log', { inputSchema: secretOnly }, async ({ secret }, extra) => {
  await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data: secret } })
  return text('logged')
})

server.registerTool('chatter-later', { inputSchema: later }, async ({ secret, delayMs }) => {
  void sleep(delayMs).then(() => chatter(secret))
  return text('later')
})

server.registerTool('progress', { inputSchema: later }, async ({ delayMs }, extra) => {
  const progressToken = extra._meta?.progressToken
  if (progressToken === undefined) return text('no progress token')
  await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: 1 } })
  // And again after the answer, for a request that is no longer in flight.
  void sleep(delayMs).then(() =>
    notify({ method: 'notifications/progress', params: { progressToken, progress: 2 } }),
  )
  return text('progressed')
})

server.registerTool('list-changed', { inputSchema: secretOnly }, async ({ secret }) => {
  await notify({ method: 'notifications/tools/list_changed', params: { _meta: { secret } } })
  return text('changed')
})

const transport = new StdioServerTransport()
await server.connect(transport)
const handle = transport.onmessage
transport.onmessage = (message) => {
  if ('method' in message && message.method === 'initialize') seenInitialize.push(message.params)
  handle?.(message)
}
