import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { authorize, register, token } from '../auth-server/harness.ts'
import { asHarness, startEmbeddedGateway } from '../support/embedded-gateway.ts'
import { type ExchangeApi, startExchangeApi } from '../support/exchange-api.ts'
import { connectClient, INITIALIZE, postRpc } from '../support/gateway-harness.ts'

const ORDERS = 'https://orders.internal.example/api'
const GATEWAY = { client_id: 'gateway', client_secret: 'gateway-secret-gateway-secret-0123' }

/** A user's MCP token from the embedded server: DCR, then the code flow through the development sign-in. */
async function accessToken(gateway: Gateway, scope: string): Promise<string> {
  const h = asHarness(gateway)
  const { body } = await register(h, {
    client_name: 'exchange test client',
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  })
  const clientId = body.client_id as string
  const { code, redirectUri, verifier } = await authorize(h, clientId, { scope })
  const tokens = await token(h, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    client_id: clientId,
    resource: gateway.resource,
  })
  assert.equal(tokens.response.status, 200, JSON.stringify(tokens.body))
  return tokens.body.access_token as string
}

describe('gateway exchange mode at the embedded authorization server', () => {
  let api: ExchangeApi
  let gateway: Gateway

  before(async () => {
    api = await startExchangeApi(ORDERS, 'orders:read')
    gateway = await startEmbeddedGateway(
      { dev: true, upstream: api.url, command: undefined },
      {
        // whoami needs orders:read: the embedded server then offers that scope for the MCP URL.
        tools: { whoami: { scopes: ['orders:read'] } },
        authorization_server: {
          clients: [{ ...GATEWAY, grant_types: [], redirect_uris: [], response_types: [] }],
          token_exchange: [{ clients: [GATEWAY.client_id], audiences: [ORDERS], scopes: ['orders:read'] }],
        },
        upstream_credentials: {
          mode: 'exchange',
          exchange: { ...GATEWAY, audience: ORDERS, scope: 'orders:read' },
        },
      },
    )
    api.trust(new URL(gateway.resource).origin)
  })
  after(async () => {
    await gateway?.close()
    await api?.close()
  })

  test('the API gets a JWT from the embedded issuer: the user as sub, the gateway in act; never the MCP token', async () => {
    const mcpToken = await accessToken(gateway, 'mcp orders:read')
    const client = await connectClient(gateway.resource, mcpToken)
    try {
      const result = await client.callTool({ name: 'whoami', arguments: {} })
      const said = result.structuredContent as Record<string, unknown>
      assert.equal(typeof said.sub, 'string')
      assert.equal(said.aud, ORDERS)
      assert.equal(said.scope, 'orders:read')
      assert.deepEqual(said.act, { sub: GATEWAY.client_id })
    } finally {
      await client.close()
    }
    for (const headers of api.seen)
      assert.doesNotMatch(JSON.stringify(headers), new RegExp(mcpToken.split('.')[2] as string))
  })

  test('refused by the policy (the MCP token lacks the scope, which only narrows): 403, the API saw nothing', async () => {
    const mcpToken = await accessToken(gateway, 'mcp')
    const seen = api.seen.length
    const response = await postRpc(gateway.resource, INITIALIZE, { authorization: `Bearer ${mcpToken}` })
    assert.equal(response.status, 403)
    assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer error="insufficient_scope"/)
    assert.equal(api.seen.length, seen)
  })
})
