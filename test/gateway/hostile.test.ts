import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createLocalJWKSet, jwtVerify } from 'jose'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  INITIALIZE,
  type LogCapture,
  logCapture,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const LIST = { jsonrpc: '2.0', id: 7, method: 'tools/list' }

describe('gateway: hostile input and failing upstreams', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let gateways: Record<'record' | 'hang' | 'garbage' | 'truncated' | 'unreachable', Gateway>
  let log: LogCapture
  let token: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
    log = logCapture()
    // The hanging upstream's 504 waits out the timeout; the others must answer within it on a loaded machine.
    const limits = { max_body_bytes: 2048, upstream_timeout_ms: 2000 }
    const [record, hang, garbage, truncated, unreachable] = await Promise.all([
      startTestGateway(
        idp,
        { upstream: upstream.url('record') },
        { limits, sessions: { max_sessions: 3, max_sessions_per_user: 3 } },
        log,
      ),
      startTestGateway(idp, { upstream: upstream.url('hang') }, { limits }),
      startTestGateway(idp, { upstream: upstream.url('garbage') }, { limits }),
      startTestGateway(idp, { upstream: upstream.url('truncated') }, { limits }),
      // Port 9 (discard) on loopback: nothing listens there.
      startTestGateway(idp, { upstream: 'http://127.0.0.1:9/mcp' }, { limits }),
    ])
    gateways = { record, hang, garbage, truncated, unreachable } as typeof gateways
    token = await tokenFor(idp, 'alice', 'mcp')
  })

  after(async () => {
    await Promise.all(Object.values(gateways ?? {}).map((g) => g.close()))
    await upstream?.close()
    await idp?.close()
  })

  const badBodies = [
    {
      name: 'invalid JSON',
      body: '{"jsonrpc": "2.0", "id": 1,',
      code: -32700,
      message: 'the body is not valid JSON: it ends unfinished at character 27',
    },
    {
      name: 'not JSON-RPC',
      body: '{"hello": "world"}',
      code: -32600,
      message: 'the body is not a JSON-RPC 2.0 message',
    },
    { name: 'an empty batch', body: '[]', code: -32600, message: 'the batch is empty' },
  ]
  for (const { name, body, code, message } of badBodies) {
    it(`answers 400 to ${name} with a valid token, 401 without one, and the upstream sees neither`, async () => {
      upstream.seen.length = 0
      const anonymous = await postRpc(gateways.record.resource, body)
      assert.equal(anonymous.status, 401)
      const response = await postRpc(gateways.record.resource, body, { authorization: `Bearer ${token}` })
      assert.equal(response.status, 400)
      assert.deepEqual(await response.json(), { jsonrpc: '2.0', id: null, error: { code, message } })
      assert.equal(upstream.seen.length, 0)
    })
  }

  it('answers 413 to an oversized body without reading it all', async () => {
    const big = { ...LIST, params: { padding: 'x'.repeat(4096) } }
    const response = await postRpc(gateways.record.resource, big, { authorization: `Bearer ${token}` })
    assert.equal(response.status, 413)
    assert.deepEqual(await response.json(), {
      jsonrpc: '2.0',
      id: null,
      error: { code: -32600, message: 'the request body exceeds 2048 bytes' },
    })
  })

  it('refuses Mcp-Method and Mcp-Name headers that disagree with the body', async () => {
    const call = { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: {} } }
    const cases: { headers: Record<string, string>; message: string }[] = [
      { headers: { 'mcp-method': 'tools/list' }, message: 'the Mcp-Method header does not match the body' },
      {
        headers: { 'mcp-method': 'tools/call', 'mcp-name': 'other' },
        message: 'the Mcp-Name header does not match the body',
      },
    ]
    for (const { headers, message } of cases) {
      const response = await postRpc(gateways.record.resource, call, {
        authorization: `Bearer ${token}`,
        ...headers,
      })
      assert.equal(response.status, 400)
      assert.deepEqual(await response.json(), { jsonrpc: '2.0', id: 3, error: { code: -32020, message } })
    }
  })

  it('strips the token and gives the upstream a signed identity with the upstream as audience', async () => {
    upstream.seen.length = 0
    const response = await postRpc(gateways.record.resource, LIST, {
      authorization: `Bearer ${token}`,
      cookie: 'sid=secret-cookie',
    })
    assert.equal(response.status, 200)
    const [headers] = upstream.seen
    assert.equal(headers?.authorization, undefined)
    assert.equal(headers?.cookie, undefined)
    assert.equal(headers?.['x-gatehouse-subject'], 'alice')
    assert.equal(headers?.['x-gatehouse-scopes'], 'mcp')
    const jwks = await (
      await fetch(new URL('/.well-known/gatehouse/upstream-jwks.json', gateways.record.resource))
    ).json()
    const { payload } = await jwtVerify(
      headers?.['x-gatehouse-identity'] as string,
      createLocalJWKSet(jwks),
      {
        issuer: gateways.record.resource,
        audience: upstream.url('record'),
      },
    )
    assert.equal(payload.sub, 'alice')
    assert.equal(payload.token_issuer, idp.issuer)
  })

  it('caps the number of sessions: a flood of initialize requests gets 503', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) {
      statuses.push(
        (await postRpc(gateways.record.resource, INITIALIZE, { authorization: `Bearer ${token}` })).status,
      )
    }
    assert.deepEqual(statuses, [200, 200, 200, 503])
  })

  const failing = [
    { upstream: 'hang', status: 504, message: 'the MCP server did not answer in time' },
    {
      upstream: 'garbage',
      status: 502,
      message: 'the MCP server answered with something that is not JSON-RPC',
    },
    { upstream: 'unreachable', status: 502, message: 'the MCP server cannot be reached' },
    // A JSON answer cut short is a broken connection, not one too large.
    { upstream: 'truncated', status: 502, message: 'the MCP server connection failed' },
  ] as const
  for (const { upstream: kind, status, message } of failing) {
    it(`answers ${status} when the upstream is ${kind}, and stays up`, async () => {
      const gateway = gateways[kind]
      const response = await postRpc(gateway.resource, LIST, { authorization: `Bearer ${token}` })
      assert.equal(response.status, status)
      assert.deepEqual(await response.json(), { jsonrpc: '2.0', id: 7, error: { code: -32603, message } })
      assert.equal((await fetch(new URL('/healthz', gateway.resource))).status, 200)
      const metrics = await (await fetch(new URL('/metrics', gateway.resource))).text()
      assert.match(metrics, new RegExp(`gatehouse_requests_total\\{method="POST",status="${status}"\\} 1`))
    })
  }

  it('counts auth failures by reason in /metrics', async () => {
    const gateway = gateways.garbage
    await postRpc(gateway.resource, LIST, { authorization: 'Bearer not-a-jwt' })
    const metrics = await (await fetch(new URL('/metrics', gateway.resource))).text()
    assert.match(metrics, /gatehouse_auth_failures_total\{reason="token_opaque"\} 1/)
    assert.match(metrics, /# TYPE gatehouse_sessions_active gauge\ngatehouse_sessions_active 0/)
  })

  it('logs at debug level without the token or the cookie', () => {
    const text = log.lines.join('')
    assert.ok(log.lines.length > 0)
    assert.ok(text.includes('"authorization":"[redacted]"'), 'the request headers were logged, redacted')
    assert.ok(!text.includes(token), 'the access token appears in the log')
    assert.ok(!text.includes(token.split('.')[2] as string), 'the token signature appears in the log')
    assert.ok(!text.includes('secret-cookie'), 'the cookie appears in the log')
  })
})
