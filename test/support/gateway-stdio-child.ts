/**
 * A deliberately fragile stdio MCP server for the gateway's failure tests. Run as a child process:
 * `tools/call` of `crash` exits, of `hang` never answers (after one progress notification when asked for
 * progress), of `garbage` writes a non-JSON line first, of `slow` (not listed) answers after `arguments.ms`.
 * Each call is reported on stderr as `started <name>` when it arrives. A `notifications/cancelled` is reported on stderr,
 * which the gateway logs, so tests can see what reached the child.
 */
import { createInterface } from 'node:readline'

const send = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`)

const tools = ['crash', 'hang', 'garbage'].map((name) => ({ name, inputSchema: { type: 'object' } }))

createInterface({ input: process.stdin }).on('line', (line) => {
  const message = JSON.parse(line) as {
    id?: number | string
    method?: string
    params?: {
      name?: string
      arguments?: { ms?: number }
      requestId?: number | string
      _meta?: { progressToken?: unknown }
    }
  }
  if (message.method === 'notifications/cancelled')
    process.stderr.write(`cancelled ${message.params?.requestId}\n`)
  if (message.id === undefined || message.method === undefined) return
  const reply = (result: unknown) => send({ jsonrpc: '2.0', id: message.id, result })
  if (message.method === 'initialize') {
    reply({
      protocolVersion: '2025-06-18',
      capabilities: { tools: {} },
      serverInfo: { name: 'fragile', version: '1' },
    })
  } else if (message.method === 'tools/list') {
    reply({ tools })
  } else if (message.method === 'tools/call') {
    const name = message.params?.name
    process.stderr.write(`started ${name}\n`)
    if (name === 'crash') process.exit(3)
    if (name === 'slow') {
      setTimeout(
        () => reply({ content: [{ type: 'text', text: 'slow done' }] }),
        message.params?.arguments?.ms,
      )
      return
    }
    const progressToken = message.params?._meta?.progressToken
    if (name === 'hang' && progressToken !== undefined)
      send({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken, progress: 1 } })
    if (name === 'hang') return
    if (name === 'garbage') process.stdout.write('this is not JSON-RPC\n')
    reply({ content: [{ type: 'text', text: `called ${name}` }] })
  } else {
    send({ jsonrpc: '2.0', id: message.id, error: { code: -32601, message: 'method not found' } })
  }
})
