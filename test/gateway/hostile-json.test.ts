import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { sendJson, sendRpcError, sendStatus } from '../../src/gateway/http.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  type LogCapture,
  logCapture,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname
/** The HTTP upstream, in this process, must answer within it however loaded the machine. */
const TIMEOUT_MS = 1000

/** An `initialize` (a discovery method, so anonymous discovery lets it in) with `levels` nested arrays in it. */
const deepInitialize = (levels: number) =>
  `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},` +
  `"clientInfo":{"name":"deep","version":"1"},"x":${'['.repeat(levels)}${']'.repeat(levels)}}}`

const SPELLING = 'spell routing keys exactly (jsonrpc, id, method, params, name, uri, arguments)'

/** Bodies an upstream with a first-wins or case-insensitive decoder reads as a call of `delete_file`. */
const SMUGGLED = [
  {
    name: 'a case-variant key in params',
    body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"delete_file"}}',
    message: `the key "Name" in params reads as "name" to a case-insensitive decoder; ${SPELLING}`,
  },
  {
    name: 'a case-variant method',
    body: '{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"delete_file"}}',
    message: `the key "Method" of the message reads as "method" to a case-insensitive decoder; ${SPELLING}`,
  },
  {
    name: 'params spelled with a long s (U+017F)',
    body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"paramſ":{"name":"delete_file"}}',
    message: `the key "paramſ" of the message reads as "params" to a case-insensitive decoder; ${SPELLING}`,
  },
  {
    name: 'a duplicate name (first wins elsewhere)',
    body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","name":"echo"}}',
    message: 'the key "name" appears twice in one object in params; send each key once',
  },
  {
    name: 'a duplicate written with an escape',
    body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","na\\u006de":"echo"}}',
    message: 'the key "name" appears twice in one object in params; send each key once',
  },
  {
    name: 'a smuggled method in the second message of a batch',
    body: '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping","METHOD":"tools/call","params":{"name":"delete_file"}}]',
    message: `the key "METHOD" of the message reads as "method" to a case-insensitive decoder; ${SPELLING}`,
  },
]

describe('gateway: hostile JSON-RPC bodies', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let gateways: Record<'stdio' | 'http', Gateway>
  let stdioLog: LogCapture
  let token: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
    stdioLog = logCapture()
    const file = {
      allow_anonymous_mcp_discovery: true,
      limits: { upstream_timeout_ms: TIMEOUT_MS },
      tools: { delete_file: { scopes: ['admin'] } },
    }
    const [stdio, http] = await Promise.all([
      startTestGateway(idp, { command: [NODE, FRAGILE_CHILD] }, file, stdioLog),
      startTestGateway(idp, { upstream: upstream.url('record') }, file),
    ])
    gateways = { stdio, http }
    token = await tokenFor(idp, 'alice', 'mcp')
  })

  after(async () => {
    await Promise.all(Object.values(gateways ?? {}).map((g) => g.close()))
    await upstream?.close()
    await idp?.close()
  })

  /** What reached the upstream: requests the HTTP one saw, children the stdio bridge started. */
  const reached = () => ({
    http: upstream.seen.length,
    stdio: stdioLog.lines.filter((line) => line.includes('"MCP server process started"')).length,
  })

  for (const kind of ['stdio', 'http'] as const) {
    for (const auth of ['anonymous', 'token'] as const) {
      it(`${kind}, ${auth}: a body nested 10,000 levels gets 400, reaches nothing, and the gateway outlives the upstream timeout`, async () => {
        const before = reached()
        const headers: Record<string, string> = auth === 'token' ? { authorization: `Bearer ${token}` } : {}
        const response = await postRpc(gateways[kind].resource, deepInitialize(10_000), headers)
        assert.equal(response.status, 400)
        assert.deepEqual(await response.json(), {
          jsonrpc: '2.0',
          id: null,
          error: { code: -32600, message: 'the body nests objects and arrays deeper than 64 levels' },
        })
        // The crash came one upstream timeout after the 500: the bridge's timer answered it again.
        await sleep(TIMEOUT_MS * 2)
        assert.equal((await fetch(new URL('/healthz', gateways[kind].resource))).status, 200)
        assert.deepEqual(reached(), before)
      })
    }
  }

  it('takes a body nested 64 levels', async () => {
    // initialize object, params object, 62 arrays.
    const response = await postRpc(gateways.http.resource, deepInitialize(62))
    assert.equal(response.status, 200)
    assert.equal((await postRpc(gateways.http.resource, deepInitialize(63))).status, 400)
  })

  for (const kind of ['stdio', 'http'] as const) {
    for (const { name, body, message } of SMUGGLED) {
      it(`${kind}: refuses ${name} (400), and the upstream sees nothing`, async () => {
        const before = reached()
        const response = await postRpc(gateways[kind].resource, body, { authorization: `Bearer ${token}` })
        assert.equal(response.status, 400)
        assert.deepEqual(await response.json(), {
          jsonrpc: '2.0',
          id: null,
          error: { code: -32600, message },
        })
        assert.deepEqual(reached(), before)
      })
    }
  }

  it('refuses a case-variant method smuggled into anonymous discovery', async () => {
    const before = reached()
    const body =
      '{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"delete_file"}}'
    const response = await postRpc(gateways.http.resource, body)
    assert.equal(response.status, 400)
    assert.deepEqual(reached(), before)
  })

  it('answers 413 to an oversize chunked body instead of resetting the connection', async () => {
    const chunk = new TextEncoder().encode(
      `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"${'x'.repeat(65_536)}`,
    )
    const filler = new TextEncoder().encode('x'.repeat(65_536))
    let sent = 0
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        // 17 chunks of 64 KiB: past the 1 MiB default limit, with no Content-Length to refuse up front.
        controller.enqueue(sent++ === 0 ? chunk : filler)
        if (sent > 17) controller.close()
      },
    })
    const response = await fetch(gateways.http.resource, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
      duplex: 'half',
    } as RequestInit)
    assert.equal(response.status, 413)
    assert.equal((await response.json()).error.message, 'the request body exceeds 1048576 bytes')
  })

  it('passes tool arguments whose keys differ only in case: the gateway authorizes nothing in them', async () => {
    const before = reached().http
    const body =
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"Name":"a","name":"b"}}}'
    const response = await postRpc(gateways.http.resource, body, { authorization: `Bearer ${token}` })
    assert.equal(response.status, 200)
    assert.equal(reached().http, before + 1)
  })
})

describe('gateway: a response is answered once', () => {
  it('ignores every later answer: no throw, the first one arrives, the connection stays usable', async () => {
    const thrown: unknown[] = []
    const server = createServer((req, res) => {
      sendJson(res, 200, { first: req.url })
      // Later, as a timer or a child's output handler would: none of these may throw.
      setImmediate(() => {
        try {
          sendJson(res, 200, { second: true })
          sendRpcError(res, 504, -32001, 'too late')
          sendStatus(res, 202)
        } catch (error) {
          thrown.push(error)
        }
      })
    }).listen(0, '127.0.0.1')
    await once(server, 'listening')
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      for (const path of ['/a', '/b']) {
        const response = await fetch(url + path)
        assert.deepEqual(await response.json(), { first: path })
        await sleep(20)
      }
      assert.deepEqual(thrown, [])
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})
