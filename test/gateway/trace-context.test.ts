/**
 * `Origin` (once validated), W3C trace context and `Mcp-Param-*` reach the upstream: as headers on every
 * method to an HTTP upstream, and (trace context only: a child has no headers, and `Mcp-Param-*` copy the
 * body it gets) in each request's `_meta` to a stdio child. The gateway has no tracing option of its own:
 * the context is continued unchanged.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  INITIALIZE,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import { startScriptedUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const RAW_CHILD = new URL('../support/stdio-raw-child.ts', import.meta.url).pathname
const ALLOWED = 'https://app.example'
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
const TRACE = { traceparent: TRACEPARENT, tracestate: 'vendor=abc,other=1' }

describe('gateway: Origin, trace context and Mcp-Param-* to an HTTP upstream', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>
  let gateway: Gateway
  let auth: Record<string, string>
  let sessionId: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startScriptedUpstream()])
    gateway = await startTestGateway(idp, { upstream: upstream.url }, { allowed_origins: [ALLOWED] })
    auth = { authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp')}` }
    upstream.answer = (_request, res) =>
      void res
        .writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'upstream-session' })
        .end('{"jsonrpc":"2.0","id":1,"result":{}}')
    const init = await postRpc(gateway.resource, INITIALIZE, auth)
    assert.equal(init.status, 200)
    sessionId = init.headers.get('mcp-session-id') as string
    await init.arrayBuffer()
  })
  beforeEach(() => {
    upstream.requests.length = 0
  })
  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  for (const method of ['POST', 'GET', 'DELETE'] as const) {
    it(`${method}: a configured Origin, traceparent, tracestate and Mcp-Param-* arrive unchanged`, async () => {
      if (method === 'GET')
        upstream.answer = (_request, res) =>
          void res.writeHead(200, { 'content-type': 'text/event-stream' }).end()
      else
        upstream.answer = (_request, res) =>
          void res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      const headers = {
        ...auth,
        ...TRACE,
        origin: ALLOWED,
        'mcp-param-region': 'eu',
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-06-18',
        accept: method === 'GET' ? 'text/event-stream' : 'application/json, text/event-stream',
        'content-type': 'application/json',
      }
      const response = await fetch(gateway.resource, {
        method,
        headers,
        body: method === 'POST' ? JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }) : undefined,
      })
      await response.arrayBuffer()
      assert.equal(response.status, 200)
      const [request] = upstream.requests
      assert.equal(request?.method, method)
      assert.equal(request?.headers.origin, ALLOWED)
      assert.equal(request?.headers.traceparent, TRACEPARENT)
      assert.equal(request?.headers.tracestate, TRACE.tracestate)
      assert.equal(request?.headers['mcp-param-region'], 'eu')
    })
  }

  it('a foreign Origin is refused before the upstream sees anything: only a validated one is forwarded', async () => {
    const response = await postRpc(gateway.resource, INITIALIZE, {
      ...auth,
      ...TRACE,
      origin: 'https://evil.example',
    })
    assert.equal(response.status, 403)
    assert.deepEqual(upstream.requests, [])
  })
})

describe('gateway: trace context to a stdio child, in _meta', () => {
  let idp: TestIdp
  let gateway: Gateway
  let session: Record<string, string>

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(idp, { command: [NODE, RAW_CHILD] })
    const auth = { authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp')}` }
    const init = await postRpc(gateway.resource, INITIALIZE, auth)
    session = {
      ...auth,
      'mcp-session-id': init.headers.get('mcp-session-id') as string,
      accept: 'application/json',
    }
    await init.arrayBuffer()
  })
  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  /** The `_meta` the child received with a `tools/call` sent with `headers` and `meta`. */
  async function metaSeen(headers: Record<string, string>, meta?: Record<string, unknown>): Promise<unknown> {
    const params = { name: 'meta', arguments: {}, ...(meta ? { _meta: meta } : {}) }
    const response = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params },
      {
        ...session,
        ...headers,
      },
    )
    return ((await response.json()) as { result: { meta: unknown } }).result.meta
  }

  it('continues the headers’ traceparent and tracestate, beside the request’s own _meta', async () => {
    assert.deepEqual(await metaSeen(TRACE, { progressToken: undefined, app: 'x' }), { ...TRACE, app: 'x' })
    assert.deepEqual(await metaSeen({ traceparent: TRACEPARENT }), { traceparent: TRACEPARENT })
  })

  it('a request that carries its own traceparent keeps it', async () => {
    const own = { traceparent: '00-11111111111111111111111111111111-2222222222222222-00' }
    // The headers' tracestate belongs to their traceparent: it is not mixed into another context.
    assert.deepEqual(await metaSeen(TRACE, own), own)
  })

  it('an invalid traceparent (all-zero ids, version ff, not lower-case hex) adds nothing; no header, nothing', async () => {
    for (const traceparent of [
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
      `${TRACEPARENT} x`,
    ])
      assert.equal(await metaSeen({ traceparent }), null, traceparent)
    assert.equal(await metaSeen({}), null)
  })

  it('an over-long tracestate is dropped, the traceparent kept', async () => {
    assert.deepEqual(await metaSeen({ traceparent: TRACEPARENT, tracestate: `a=${'b'.repeat(600)}` }), {
      traceparent: TRACEPARENT,
    })
  })
})
