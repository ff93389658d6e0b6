import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  INITIALIZE,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const RAW_CHILD = new URL('../support/stdio-raw-child.ts', import.meta.url).pathname
/** What the child writes (see stdio-raw-child.ts); its CR is whitespace, and the only byte the bridge drops. */
const ODD = String.raw`{"content": [{"type":"text","text":"\u00e9 \/ \ud83d\ude00"}] ,"n":12345678901234567890,"f":1.0}`
const TOOLS = `{ "tools": [{"name":"echo","inputSchema":{"type":"object"}},{"name":"secret","inputSchema":{"type":"object"}}], "n": 1.0 }`
const answer = (id: string, result: string) => `{"jsonrpc": "2.0", "id": ${id}, "result": ${result}}`
const STATELESS_META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': {},
}

/** The `data` of each SSE event in `text`, in order (the priming event's is empty). */
const sseData = (text: string): string[] =>
  text
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) =>
      block
        .split('\n')
        .filter((line) => line.startsWith('data: ') || line === 'data:')
        .map((line) => line.slice(6))
        .join('\n'),
    )

describe('gateway: the stdio bridge relays bytes both ways', () => {
  let idp: TestIdp
  let gateway: Gateway
  let admin: Record<string, string>
  let session: Record<string, string>

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, RAW_CHILD] },
      { tools: { secret: { scopes: ['admin'] } } },
    )
    admin = { authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp admin')}` }
    const init = await postRpc(gateway.resource, INITIALIZE, admin)
    assert.equal(init.status, 200)
    session = { ...admin, 'mcp-session-id': init.headers.get('mcp-session-id') as string }
    await init.arrayBuffer()
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('a JSON answer: big integer, 1.0, escapes and spacing as the child wrote them, under the client’s id', async () => {
    const response = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 'list-1', method: 'tools/list' },
      session,
    )
    assert.equal(response.status, 200)
    assert.equal(await response.text(), answer('"list-1"', TOOLS))
  })

  it('an SSE answer and its progress notification: the child’s bytes, the client’s id and token spliced in', async () => {
    const response = await postRpc(
      gateway.resource,
      {
        jsonrpc: '2.0',
        id: 9,
        method: 'tools/call',
        params: { name: 'echo', arguments: {}, _meta: { progressToken: 'p\u00e9' } },
      },
      session,
    )
    assert.equal(response.headers.get('content-type'), 'text/event-stream')
    assert.deepEqual(sseData(await response.text()), [
      '',
      String.raw`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1.0,"progressToken":"pé","message":"\u00e9"}}`,
      answer('9', ODD),
    ])
  })

  it('a batch: each answer’s bytes, in one JSON array', async () => {
    const response = await postRpc(
      gateway.resource,
      [
        { jsonrpc: '2.0', id: 1, method: 'tools/list' },
        { jsonrpc: '2.0', id: 2, method: 'prompts/list' },
      ],
      session,
    )
    const text = await response.text()
    assert.ok(
      text === `[${answer('1', TOOLS)},${answer('2', ODD)}]` ||
        text === `[${answer('2', ODD)},${answer('1', TOOLS)}]`,
      text,
    )
  })

  it('a tools/list the policy filters is the one message rewritten', async () => {
    const user = { authorization: `Bearer ${await tokenFor(idp, 'bob', 'mcp')}` }
    const init = await postRpc(gateway.resource, INITIALIZE, user)
    const headers = { ...user, 'mcp-session-id': init.headers.get('mcp-session-id') as string }
    await init.arrayBuffer()
    const response = await postRpc(gateway.resource, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, headers)
    assert.deepEqual(await response.json(), {
      jsonrpc: '2.0',
      id: 3,
      result: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }], n: 1 },
    })
  })

  it('2026-07-28: the result fields the revision requires are added in front, the child’s bytes kept', async () => {
    const response = await postRpc(
      gateway.resource,
      {
        jsonrpc: '2.0',
        id: 4,
        method: 'tools/call',
        params: { name: 'echo', arguments: {}, _meta: STATELESS_META },
      },
      {
        ...admin,
        accept: 'application/json',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'echo',
      },
    )
    assert.equal(response.status, 200)
    assert.equal(await response.text(), answer('4', `{"resultType":"complete",${ODD.slice(1)}`))
    const list = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 5, method: 'tools/list', params: { _meta: STATELESS_META } },
      {
        ...admin,
        accept: 'application/json',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/list',
      },
    )
    assert.equal(
      await list.text(),
      answer('5', `{"resultType":"complete","ttlMs":0,"cacheScope":"private",${TOOLS.slice(1)}`),
    )
  })

  /** The lines the child read for a POST of `body` (raw text), the ids and tokens the bridge numbers as `<id>`, `<token>`. */
  async function lineSeen(body: string, headers: Record<string, string> = {}): Promise<string[]> {
    const response = await postRpc(gateway.resource, body, {
      ...session,
      accept: 'application/json',
      ...headers,
    })
    const answers = (await response.json()) as { result: { line: string } } | { result: { line: string } }[]
    return (Array.isArray(answers) ? answers : [answers]).map((a) =>
      a.result.line
        .replace(/"id":\d+/, '"id":<id>')
        .replace(/"progressToken":\d+/, '"progressToken":<token>'),
    )
  }

  it('a client request reaches the child as the client wrote it, line ends dropped, only the id renumbered', async () => {
    const args = String.raw`{"n":12345678901234567890, "f":1.0,"s":"\u00e9\/"}`
    const body = `{"jsonrpc":"2.0",\n  "id":"c-1","method":"tools/call",\r\n"params":{"name":"line","arguments":${args}}}`
    assert.deepEqual(await lineSeen(body), [
      `{"jsonrpc":"2.0",  "id":<id>,"method":"tools/call","params":{"name":"line","arguments":${args}}}`,
    ])
  })

  it('each request of a batch as written; a progress token renumbered and the trace context added in place', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    const first = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"line","arguments":{"x":1.0}}}`
    const second = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"_meta":{"progressToken":"t"},"name":"line"}}`
    const lines = await lineSeen(`[ ${first} ,\n${second}]`, { traceparent })
    const meta = `"_meta":{"traceparent":"${traceparent}"`
    assert.deepEqual(lines.sort(), [
      `{"jsonrpc":"2.0","id":<id>,"method":"tools/call","params":{${meta},"progressToken":<token>},"name":"line"}}`,
      `{"jsonrpc":"2.0","id":<id>,"method":"tools/call","params":{${meta}},"name":"line","arguments":{"x":1.0}}}`,
    ])
  })

  it('a big integer id and progress token come back with the digits the client wrote', async () => {
    const body = `{"jsonrpc":"2.0","id":12345678901234567890,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":98765432109876543210}}}`
    const response = await postRpc(gateway.resource, body, session)
    assert.deepEqual(sseData(await response.text()), [
      '',
      String.raw`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1.0,"progressToken":98765432109876543210,"message":"\u00e9"}}`,
      answer('12345678901234567890', ODD),
    ])
  })
})
