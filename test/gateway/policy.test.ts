import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  type LogCapture,
  logCapture,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const call = (id: number, name: string) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: {} },
})

describe('gateway: anonymous discovery, batches, upstream credentials', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let anonymous: Gateway
  let passthrough: Gateway
  let log: LogCapture
  let token: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
    log = logCapture()
    ;[anonymous, passthrough] = await Promise.all([
      startTestGateway(
        idp,
        { upstream: upstream.url('record') },
        { allow_anonymous_mcp_discovery: true, tools: { 'delete-all': { scopes: ['admin'] } } },
      ),
      startTestGateway(
        idp,
        { upstream: upstream.url('record') },
        { upstream_credentials: { mode: 'passthrough' } },
        log,
      ),
    ])
    token = await tokenFor(idp, 'carol', 'mcp')
  })

  after(async () => {
    await Promise.all([anonymous?.close(), passthrough?.close()])
    await upstream?.close()
    await idp?.close()
  })

  it('lets tools/list through without a token when anonymous discovery is on, but not tools/call', async () => {
    upstream.seen.length = 0
    const list = await postRpc(anonymous.resource, { jsonrpc: '2.0', id: 1, method: 'tools/list' })
    assert.equal(list.status, 200)
    assert.equal(upstream.seen[0]?.['x-gatehouse-subject'], undefined)
    assert.equal(upstream.seen[0]?.['x-gatehouse-identity'], undefined)
    const echo = await postRpc(anonymous.resource, call(2, 'echo'))
    assert.equal(echo.status, 401)
  })

  it('checks every tools/call of a batch: one tool without its scopes refuses the batch with 403', async () => {
    const response = await postRpc(anonymous.resource, [call(1, 'echo'), call(2, 'delete-all')], {
      authorization: `Bearer ${token}`,
    })
    assert.equal(response.status, 403)
    assert.match(response.headers.get('www-authenticate') ?? '', /error="insufficient_scope".*scope="admin"/)
    const allowed = await postRpc(
      anonymous.resource,
      [call(1, 'echo'), { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 0 } }],
      {
        authorization: `Bearer ${token}`,
      },
    )
    assert.equal(allowed.status, 200)
  })

  it('forwards the client token in passthrough mode, and warns about it at start', async () => {
    upstream.seen.length = 0
    const response = await postRpc(
      passthrough.resource,
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      {
        authorization: `Bearer ${token}`,
      },
    )
    assert.equal(response.status, 200)
    assert.equal(upstream.seen[0]?.authorization, `Bearer ${token}`)
    const warning = log.lines.map((line) => JSON.parse(line)).find((entry) => entry.level === 40)
    assert.match(
      warning?.msg ?? '',
      /upstream_credentials.mode is passthrough: .*violates the MCP authorization spec/,
    )
  })
})
