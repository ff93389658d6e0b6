/**
 * A stdio MCP server that writes its lines by hand, in bytes `JSON.stringify` would never produce: a big
 * integer, `1.0`, escapes (`\/`, `\u00e9`, a surrogate pair), spacing, and a CR as whitespace. Every answer
 * is `{"jsonrpc": "2.0", "id": <id>, "result": <ODD>}`, the `tools/list` one lists `echo` and `secret`; a
 * `tools/call` with a progress token sends a progress notification in the same style first. A `tools/call`
 * of `meta` answers with the `_meta` the request arrived with (`null` for none), of `line` with the line
 * it read, as a string; each call is reported on stderr (`called <name>`). `resources/read` answers the
 * 2025 revisions' resource-not-found error (-32002).
 */
import { createInterface } from 'node:readline'

const ODD = String.raw`{"content": [{"type":"text","text":"\u00e9 \/ \ud83d\ude00"}] ,"n":12345678901234567890,"f":1.0}`
const TOOLS = `{ "tools": [{"name":"echo","inputSchema":{"type":"object"}},{"name":"secret","inputSchema":{"type":"object"}}], "n": 1.0 }`
const INIT = `{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"1"}}`

createInterface({ input: process.stdin }).on('line', (line) => {
  const message = JSON.parse(line) as {
    id?: unknown
    method?: string
    params?: { name?: string; _meta?: { progressToken?: unknown } }
  }
  if (message.id === undefined || message.method === undefined) return
  const id = JSON.stringify(message.id)
  if (message.method === 'tools/call') process.stderr.write(`called ${message.params?.name}\n`)
  if (message.method === 'resources/read') {
    process.stdout.write(
      `{"jsonrpc":"2.0","id":${id},"error":{"code": -32002,"message":"Resource not found","data":{"uri":"x:1"}}}\n`,
    )
    return
  }
  const token = message.params?._meta?.progressToken
  if (token !== undefined)
    process.stdout.write(
      `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1.0,"progressToken":${JSON.stringify(token)},"message":"\\u00e9"}}\n`,
    )
  const result =
    message.method === 'initialize'
      ? INIT
      : message.method === 'tools/list'
        ? TOOLS
        : message.params?.name === 'meta'
          ? JSON.stringify({ content: [], meta: message.params._meta ?? null })
          : message.params?.name === 'line'
            ? JSON.stringify({ content: [], line })
            : ODD
  process.stdout.write(`{"jsonrpc": "2.0",\r "id": ${id}, "result": ${result}}\n`)
})
