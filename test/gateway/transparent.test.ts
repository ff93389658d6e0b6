import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { postRpc, startIdp, startTestGateway, tokenFor } from '../support/gateway-harness.ts'
import { startScriptedUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

/** Long enough that a process stalled by a loaded machine does not outlast it between two chunks that keep coming. */
const TIMEOUT_MS = 1000
const CALL = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: {} } }
const LIST = { jsonrpc: '2.0', id: 2, method: 'tools/list' }
/** What `JSON.parse` and `JSON.stringify` would change: a big integer, `1.0`, escapes, spacing. */
const ODD_RESULT = String.raw`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\u00e9 \/ \ud83d\ude00"}], "n":12345678901234567890,"f":1.0}}`
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A gateway in front of an upstream that answers what each test scripts, so that bytes and headers can be compared. */
describe('gateway: transparent to the HTTP upstream', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>
  let gateway: Gateway
  let auth: Record<string, string>

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startScriptedUpstream()])
    gateway = await startTestGateway(
      idp,
      { upstream: upstream.url },
      { limits: { upstream_timeout_ms: TIMEOUT_MS }, tools: { secret: { scopes: ['admin'] } } },
    )
    auth = { authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp')}` }
  })

  beforeEach(() => {
    upstream.requests.length = 0
  })

  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  const json = (text: string) => {
    upstream.answer = (_request, res) =>
      void res.writeHead(200, { 'content-type': 'application/json' }).end(text)
  }
  const sse = (text: string) => {
    upstream.answer = (_request, res) =>
      void res.writeHead(200, { 'content-type': 'text/event-stream' }).end(text)
  }

  it('relays a JSON answer byte for byte: big integers, 1.0 and escapes unchanged', async () => {
    json(ODD_RESULT)
    const response = await postRpc(gateway.resource, CALL, auth)
    assert.equal(response.status, 200)
    assert.equal(await response.text(), ODD_RESULT)
  })

  it('relays SSE events byte for byte, CRLF line endings and comments included', async () => {
    const text = `: a comment\r\nid: 7\r\nevent: message\r\ndata: ${ODD_RESULT}\r\n\r\n`
    sse(text)
    const response = await postRpc(gateway.resource, CALL, auth)
    assert.equal(response.headers.get('content-type'), 'text/event-stream')
    assert.equal(await response.text(), text)
  })

  it('rewrites a tools/list answer only when the policy hides a tool, and only that message', async () => {
    const all = String.raw`{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo","description":"\u00e9"}]}}`
    json(all)
    assert.equal(await (await postRpc(gateway.resource, LIST, auth)).text(), all)

    const hidden = `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"},{"name":"secret"}], "n":1.0}}`
    json(hidden)
    assert.deepEqual(await (await postRpc(gateway.resource, LIST, auth)).json(), {
      jsonrpc: '2.0',
      id: 2,
      result: { tools: [{ name: 'echo' }], n: 1 },
    })

    // On a stream, the other events of the answer pass unchanged around the rewritten one.
    const progress = `{"jsonrpc":"2.0","method":"notifications/message","params":{"n":1.0}}`
    sse(`data: ${progress}\n\ndata: ${hidden}\n\ndata: ${progress}\n\n`)
    const text = await (await postRpc(gateway.resource, LIST, auth)).text()
    const events = text.split('\n\n')
    assert.equal(events[0], `data: ${progress}`)
    assert.equal(events[2], `data: ${progress}`)
    assert.deepEqual(JSON.parse((events[1] as string).replace(/^(event: message\n)?data: /, '')), {
      jsonrpc: '2.0',
      id: 2,
      result: { tools: [{ name: 'echo' }], n: 1 },
    })
  })

  it('forwards end-to-end request headers, but not the credentials, hop-by-hop or X-Gatehouse-* ones', async () => {
    const origin = new URL(gateway.resource).origin
    const response = await postRpc(gateway.resource, CALL, {
      ...auth,
      origin,
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      tracestate: 'vendor=abc',
      'mcp-param-region': 'eu',
      'x-request-id': 'r-1',
      cookie: 'sid=secret-cookie',
      'accept-encoding': 'gzip, br',
      'x-gatehouse-subject': 'mallory',
      'x-gatehouse-identity': 'forged',
      'x-forwarded-for': '10.0.0.1',
      forwarded: 'for=10.0.0.1;host=admin.internal',
      'x-real-ip': '10.0.0.1',
    })
    assert.equal(response.status, 200)
    const [request] = upstream.requests
    const headers = request?.headers ?? {}
    assert.equal(headers.origin, origin)
    assert.equal(headers.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')
    assert.equal(headers.tracestate, 'vendor=abc')
    assert.equal(headers['mcp-param-region'], 'eu')
    assert.equal(headers['x-request-id'], 'r-1')
    assert.equal(headers.authorization, undefined)
    assert.equal(headers.cookie, undefined)
    // The gateway reads SSE events and tools/list answers: they must come uncompressed.
    assert.equal(headers['accept-encoding'], undefined)
    assert.equal(headers['x-gatehouse-subject'], 'alice')
    assert.notEqual(headers['x-gatehouse-identity'], 'forged')
    // What the client says of its own address would read upstream as a proxy's word.
    assert.equal(headers['x-forwarded-for'], undefined)
    assert.equal(headers.forwarded, undefined)
    assert.equal(headers['x-real-ip'], undefined)
    assert.equal(request?.body, JSON.stringify(CALL))
  })

  it('passes the upstream response headers back, except hop-by-hop and the ones the gateway owns', async () => {
    upstream.answer = (_request, res) =>
      void res
        .writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(ODD_RESULT),
          'x-request-id': 'up-1',
          'server-timing': 'db;dur=53',
          link: '</docs>; rel="help"',
          etag: '"v1"',
          'set-cookie': 'upstream=1',
          'access-control-allow-origin': '*',
          connection: 'x-hop',
          'x-hop': 'only for this connection',
        })
        .end(ODD_RESULT)
    const response = await postRpc(gateway.resource, CALL, auth)
    assert.equal(response.headers.get('x-request-id'), 'up-1')
    assert.equal(response.headers.get('server-timing'), 'db;dur=53')
    assert.equal(response.headers.get('link'), '</docs>; rel="help"')
    assert.equal(response.headers.get('etag'), '"v1"')
    assert.equal(response.headers.get('content-length'), String(Buffer.byteLength(ODD_RESULT)))
    assert.equal(response.headers.get('set-cookie'), null)
    assert.equal(response.headers.get('access-control-allow-origin'), null)
    assert.equal(response.headers.get('x-hop'), null)
    assert.equal(await response.text(), ODD_RESULT)
  })

  it('relays JSON lines sent under application/json as they come, past the timeout while they keep coming', async () => {
    // A line every tenth of the timeout, for longer than the timeout in all.
    const lines = Array.from(
      { length: 12 },
      (_, n) => `{"jsonrpc":"2.0","method":"notifications/progress","params":{"n":${n + 1}}}\n`,
    )
    upstream.answer = async (_request, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      for (const line of lines) {
        res.write(line)
        await sleep(TIMEOUT_MS / 10)
      }
      res.end()
    }
    const started = Date.now()
    const response = await postRpc(gateway.resource, CALL, auth)
    assert.equal(response.status, 200)
    assert.equal(await response.text(), lines.join(''))
    assert.ok(Date.now() - started > TIMEOUT_MS, 'the answer took longer than limits.upstream_timeout_ms')
  })

  it('cuts a JSON answer that stops coming after limits.upstream_timeout_ms', { timeout: 5000 }, async () => {
    upstream.answer = (_request, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"jsonrpc":"2.0",')
    }
    const response = await postRpc(gateway.resource, CALL, auth)
    await assert.rejects(response.text())
  })

  it('answers the requests of an SSE stream that stops coming with upstream_timeout, then ends it', {
    timeout: 5000,
  }, async () => {
    const progress = '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}'
    upstream.answer = (_request, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(`data: ${progress}\n\n`)
    }
    const text = await (await postRpc(gateway.resource, CALL, auth)).text()
    const [first, second] = text.split('\n\n')
    assert.equal(first, `data: ${progress}`)
    assert.deepEqual(JSON.parse((second as string).replace('event: message\ndata: ', '')), {
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32603, message: 'the MCP server did not answer in time' },
    })
  })
})
