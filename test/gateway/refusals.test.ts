import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, it } from 'node:test'
import { GATEWAY_ERRORS, type GatewayErrorCode } from '../../src/gateway/errors.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import { INITIALIZE, postRpc, startIdp, startTestGateway, tokenFor } from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const LIST = { jsonrpc: '2.0', id: 7, method: 'tools/list' }

/**
 * Every refusal of the MCP endpoint, each with its registry entry on the wire, and in each the upstream
 * received nothing at all: not a request, not a connection's worth of headers.
 */
describe('gateway: refusals never reach the upstream', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let gateway: Gateway
  let token: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
    gateway = await startTestGateway(
      idp,
      { upstream: upstream.url('record') },
      { limits: { max_body_bytes: 2048 } },
    )
    token = await tokenFor(idp, 'alice', 'mcp')
  })

  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  beforeEach(() => {
    upstream.received.length = 0
  })

  const bearer = () => ({ authorization: `Bearer ${token}` })

  async function assertRefused(
    response: Response,
    code: GatewayErrorCode,
    message: string = GATEWAY_ERRORS[code].description,
  ): Promise<void> {
    const { status, rpc } = GATEWAY_ERRORS[code]
    assert.equal(response.status, status)
    const body = (await response.json()) as { error: { code: number; message: string } }
    assert.deepEqual(body.error, { code: rpc, message })
    assert.deepEqual(upstream.received, [], 'the upstream received a request')
  }

  it('method_not_allowed: PUT', async () => {
    const response = await fetch(gateway.resource, { method: 'PUT', headers: bearer(), body: '{}' })
    await assertRefused(response, 'method_not_allowed', 'method PUT is not allowed on the MCP endpoint')
  })

  it('origin_forbidden: a foreign browser origin', async () => {
    const response = await postRpc(gateway.resource, LIST, { ...bearer(), origin: 'https://evil.example' })
    await assertRefused(response, 'origin_forbidden', 'Forbidden: origin https://evil.example is not allowed')
  })

  it('a missing token: the guard’s 401', async () => {
    const response = await postRpc(gateway.resource, LIST)
    assert.equal(response.status, 401)
    assert.deepEqual(upstream.received, [])
  })

  it('body_too_large', async () => {
    const big = { ...LIST, params: { padding: 'x'.repeat(4096) } }
    const response = await postRpc(gateway.resource, big, bearer())
    await assertRefused(response, 'body_too_large', 'the request body exceeds 2048 bytes')
  })

  it('body_not_json', async () => {
    const response = await postRpc(gateway.resource, '{"jsonrpc":', bearer())
    assert.equal(response.status, 400)
    assert.equal(((await response.json()) as { error: { code: number } }).error.code, -32_700)
    assert.deepEqual(upstream.received, [])
  })

  it('body_not_jsonrpc', async () => {
    const response = await postRpc(gateway.resource, { hello: 'world' }, bearer())
    await assertRefused(response, 'body_not_jsonrpc')
  })

  it('unsupported_media_type: text/plain', async () => {
    const response = await postRpc(gateway.resource, LIST, { ...bearer(), 'content-type': 'text/plain' })
    await assertRefused(response, 'unsupported_media_type')
  })

  it('unsupported_media_type: application/jsonx is not JSON', async () => {
    const headers = { ...bearer(), 'content-type': 'application/jsonx' }
    const response = await postRpc(gateway.resource, LIST, headers)
    await assertRefused(response, 'unsupported_media_type')
  })

  it('header_mismatch: Mcp-Method names another method than the body', async () => {
    const response = await postRpc(gateway.resource, LIST, { ...bearer(), 'mcp-method': 'tools/call' })
    assert.equal(response.status, 400)
    const body = (await response.json()) as { id: unknown; error: unknown }
    assert.deepEqual(body, {
      jsonrpc: '2.0',
      id: 7,
      error: {
        code: GATEWAY_ERRORS.header_mismatch.rpc,
        message: 'the Mcp-Method header does not match the body',
      },
    })
    assert.deepEqual(upstream.received, [])
  })

  it('session_not_found: an id the gateway never issued', async () => {
    const response = await postRpc(gateway.resource, LIST, { ...bearer(), 'mcp-session-id': 'made-up' })
    await assertRefused(response, 'session_not_found')
  })

  it('a request target naming another host is a path on this origin: 404, not the MCP endpoint', async () => {
    const url = new URL(gateway.resource)
    const response = await postRpc(`${url.origin}//evil.example${url.pathname}`, LIST, bearer())
    assert.equal(response.status, 404)
    assert.deepEqual(upstream.received, [])
  })

  it('accepts a media type in any case, with parameters (the upstream gets the request)', async () => {
    const headers = { ...bearer(), 'content-type': 'Application/JSON; charset=utf-8' }
    const response = await postRpc(gateway.resource, INITIALIZE, headers)
    assert.equal(response.status, 200)
    assert.deepEqual(upstream.received, [{ method: 'POST', path: '/record' }])
  })
})
