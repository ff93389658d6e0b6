import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { authorize, register, token } from '../auth-server/harness.ts'
import { asHarness, startEmbeddedGateway } from '../support/embedded-gateway.ts'
import { connectClient, postRpc } from '../support/gateway-harness.ts'

const PUBLIC_CLIENT = {
  client_name: 'embedded test client',
  redirect_uris: ['http://127.0.0.1/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
}

/** DCR, then authorization code with PKCE and `resource` = the MCP URL, through the development sign-in. */
async function accessToken(gateway: Gateway): Promise<string> {
  const h = asHarness(gateway)
  const { response, body } = await register(h, PUBLIC_CLIENT)
  assert.equal(response.status, 201)
  const clientId = body.client_id as string
  const { code, redirectUri, verifier, location } = await authorize(h, clientId, { scope: 'mcp' })
  assert.equal(location.searchParams.get('iss'), h.issuer)
  const tokens = await token(h, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    client_id: clientId,
    resource: gateway.resource,
  })
  assert.equal(tokens.response.status, 200)
  return tokens.body.access_token as string
}

describe('gatehouse serve --dev: the embedded authorization server on the MCP origin', () => {
  let gateway: Gateway
  let other: Gateway
  let issuer: string

  before(async () => {
    gateway = await startEmbeddedGateway({ dev: true })
    other = await startEmbeddedGateway({ dev: true })
    issuer = new URL(gateway.resource).origin
  })
  after(async () => {
    await gateway?.close()
    await other?.close()
  })

  it('answers 401 pointing at the PRM, which names the embedded issuer, whose metadata is at the origin', async () => {
    const challenge = await postRpc(gateway.resource, { jsonrpc: '2.0', id: 1, method: 'tools/list' })
    assert.equal(challenge.status, 401)
    const prmUrl = `${issuer}/.well-known/oauth-protected-resource/mcp`
    assert.equal(
      challenge.headers.get('www-authenticate'),
      `Bearer scope="mcp", resource_metadata="${prmUrl}"`,
    )
    const prm = (await (await fetch(prmUrl)).json()) as Record<string, unknown>
    assert.equal(prm.resource, gateway.resource)
    assert.deepEqual(prm.authorization_servers, [issuer])
    assert.deepEqual(prm.scopes_supported, ['mcp'])
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
      const metadata = (await (await fetch(`${issuer}${path}`)).json()) as Record<string, unknown>
      assert.equal(metadata.issuer, issuer)
      assert.equal(metadata.authorization_endpoint, `${issuer}/authorize`)
      assert.equal(metadata.token_endpoint, `${issuer}/token`)
      assert.equal(metadata.registration_endpoint, `${issuer}/register`)
      assert.deepEqual(metadata.code_challenge_methods_supported, ['S256'])
    }
  })

  it('issues a token for the MCP URL that calls a tool of the stdio server through the gateway', async () => {
    const client = await connectClient(gateway.resource, await accessToken(gateway))
    try {
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'embedded' } })
      assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: embedded' }])
    } finally {
      await client.close()
    }
  })

  it('a token of one instance is refused by another instance with its own issuer', async () => {
    const bearer = `Bearer ${await accessToken(gateway)}`
    const result = await other.guard.check(
      new Request(other.resource, { method: 'POST', headers: { authorization: bearer } }),
    )
    assert.equal(result.ok, false)
    assert.equal(result.ok === false && result.error.code, 'issuer_untrusted')
    const refused = await postRpc(
      other.resource,
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      {
        authorization: bearer,
      },
    )
    assert.equal(refused.status, 401)
    assert.match(refused.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
  })
})
