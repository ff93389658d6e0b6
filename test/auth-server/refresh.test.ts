import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { basic, connect, type Harness, registerPublicClient, startAuthServer, token } from './harness.ts'

describe('refresh tokens, revocation, introspection', () => {
  let h: Harness
  let clientId: string
  before(async () => {
    h = await startAuthServer({ path: '/oauth' })
    clientId = await registerPublicClient(h)
  })
  after(() => h.close())

  const refresh = (refreshToken: string, extra: Record<string, string> = {}) =>
    token(h, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, ...extra })

  const introspect = async (
    value: string,
    credentials = basic('resource-server', 'resource-server-secret-0123456'),
  ) => {
    const response = await fetch(`${h.issuer}/introspect`, {
      method: 'POST',
      headers: credentials,
      body: new URLSearchParams({ token: value }),
    })
    return { response, body: (await response.json()) as Record<string, unknown> }
  }

  // Concurrent refreshes and retries within the reuse interval: refresh-retry.test.ts.
  test('a public client gets a new refresh token on every use; reusing an old one revokes the grant', async () => {
    const first = await connect(h, clientId)
    const second = await refresh(first.refresh_token as string)
    assert.equal(second.response.status, 200)
    assert.notEqual(second.body.refresh_token, first.refresh_token)
    const third = await refresh(second.body.refresh_token as string)
    assert.equal(third.response.status, 200)

    const reuse = await refresh(first.refresh_token as string)
    assert.equal(reuse.response.status, 400)
    assert.equal(reuse.body.error, 'invalid_grant')
    const newest = await refresh(third.body.refresh_token as string)
    assert.equal(newest.body.error, 'invalid_grant')
  })

  test('a refresh keeps the audience; a broader scope is invalid_scope', async () => {
    const { refresh_token } = await connect(h, clientId)
    const broader = await refresh(refresh_token as string, { scope: 'mcp:read mcp:write' })
    assert.equal(broader.body.error, 'invalid_scope')
    const same = await refresh(refresh_token as string, { resource: h.resource })
    assert.equal(same.response.status, 200)
    const claims = JSON.parse(
      Buffer.from((same.body.access_token as string).split('.')[1] as string, 'base64url').toString(),
    )
    assert.equal(claims.aud, h.resource)
  })

  // oidc-provider rotates before it checks `resource`: without the guard the token would be burnt and the retry
  // would count as reuse, revoking the grant.
  for (const [name, resource] of [
    ['an unknown resource', 'https://unknown.example/mcp'],
    ['a configured resource that was not granted', 'OTHER'],
  ] as const) {
    test(`a refresh with ${name}: invalid_target, and the refresh token still works`, async () => {
      const { refresh_token } = await connect(h, clientId)
      const bad = await refresh(refresh_token as string, {
        resource: resource === 'OTHER' ? h.other : resource,
      })
      assert.equal(bad.response.status, 400)
      assert.equal(bad.body.error, 'invalid_target')
      const retry = await refresh(refresh_token as string)
      assert.equal(retry.response.status, 200)
    })
  }

  test('a revoked refresh token is refused', async () => {
    const { refresh_token } = await connect(h, clientId)
    const response = await fetch(`${h.issuer}/revoke`, {
      method: 'POST',
      body: new URLSearchParams({ token: refresh_token as string, client_id: clientId }),
    })
    assert.equal(response.status, 200)
    const after = await refresh(refresh_token as string)
    assert.equal(after.body.error, 'invalid_grant')
  })

  test('introspection answers an authenticated confidential client, not a public one', async () => {
    const { refresh_token } = await connect(h, clientId)
    const confidential = await introspect(refresh_token as string)
    assert.equal(confidential.response.status, 200)
    assert.equal(confidential.body.active, true)
    assert.equal(confidential.body.client_id, clientId)
    assert.equal(confidential.body.scope, 'mcp:read')

    const publicClient = await fetch(`${h.issuer}/introspect`, {
      method: 'POST',
      body: new URLSearchParams({ token: refresh_token as string, client_id: clientId }),
    })
    assert.deepEqual(await publicClient.json(), { active: false })

    const wrongSecret = await introspect(refresh_token as string, basic('resource-server', 'wrong'))
    assert.equal(wrongSecret.response.status, 401)
    assert.equal(wrongSecret.body.error, 'invalid_client')
  })
})
