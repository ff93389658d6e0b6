/**
 * A stdio MCP server (2025) with every notification `subscriptions/listen` can carry: it offers tools, prompts
 * and resources list changes and resource subscriptions. `tools/call` of `change` sends
 * `notifications/tools/list_changed`, of `touch` sends `notifications/resources/updated` for
 * `arguments.uri` (subscribed or not: the bridge must filter), each before its answer. Each
 * `resources/subscribe` and `resources/unsubscribe` is reported on stderr (`subscribe <uri>`), and one of a URI
 * starting `refuse:` is refused.
 */
import { createInterface } from 'node:readline'

const send = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`)

createInterface({ input: process.stdin }).on('line', (line) => {
  const message = JSON.parse(line) as {
    id?: number
    method?: string
    params?: { name?: string; uri?: string; arguments?: { uri?: string } }
  }
  if (message.id === undefined || message.method === undefined) return
  const reply = (result: unknown) => send({ jsonrpc: '2.0', id: message.id, result })
  const { method, params } = message
  if (method === 'initialize')
    reply({
      protocolVersion: '2025-06-18',
      capabilities: {
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: { listChanged: true, subscribe: true },
      },
      serverInfo: { name: 'listen', version: '1' },
    })
  else if (method === 'resources/subscribe' || method === 'resources/unsubscribe') {
    process.stderr.write(`${method.slice('resources/'.length)} ${params?.uri}\n`)
    if (params?.uri?.startsWith('refuse:'))
      send({ jsonrpc: '2.0', id: message.id, error: { code: -32602, message: 'no' } })
    else reply({})
  } else if (method === 'tools/call') {
    if (params?.name === 'change') send({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' })
    if (params?.name === 'touch')
      send({
        jsonrpc: '2.0',
        method: 'notifications/resources/updated',
        params: { uri: params.arguments?.uri },
      })
    reply({ content: [] })
  } else if (method === 'tools/list') reply({ tools: [] })
  else send({ jsonrpc: '2.0', id: message.id, error: { code: -32601, message: 'method not found' } })
})
