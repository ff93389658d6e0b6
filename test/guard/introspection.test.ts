import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import {
  type AuthorizationServerOptions,
  createGuard,
  GUARD_ERRORS,
  type GuardOptions,
} from '../../src/guard/index.ts'
import { type OpaqueIdp, startOpaqueIdp } from '../support/idp-opaque.ts'
import { closedOrigin, startScriptedServer } from '../support/jwks-server.ts'

const RESOURCE = 'https://mcp.example.com/mcp'
const quietLogger = { warn: () => {}, info: () => {} }

const bearer = (token: string) => new Request(RESOURCE, { headers: { authorization: `Bearer ${token}` } })

let idp: OpaqueIdp
before(async () => {
  idp = await startOpaqueIdp({ resource: RESOURCE })
})
after(() => idp.close())

function guardFor(
  introspection: Partial<NonNullable<AuthorizationServerOptions['introspection']>> | null = {},
  options: Partial<GuardOptions> = {},
) {
  const server: AuthorizationServerOptions = { issuer: idp.issuer }
  if (introspection) server.introspection = { ...idp.resourceServer, ...introspection }
  return createGuard({ resource: RESOURCE, authorizationServers: [server], logger: quietLogger, ...options })
}

const invalidToken = (code: keyof typeof GUARD_ERRORS) =>
  `Bearer error="invalid_token", error_description="${GUARD_ERRORS[code].description}", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`

describe('introspection against oidc-provider', () => {
  test('an active opaque token is accepted, with the identity the provider reports', async () => {
    const guard = await guardFor()
    const token = await idp.issueToken()
    const before = idp.introspections
    const result = await guard.check(bearer(token))
    assert.ok(result.ok, result.ok ? '' : result.error.message)
    assert.equal(result.token.via, 'introspection')
    assert.equal(result.token.issuer, idp.issuer)
    assert.equal(result.token.clientId, 'mcp-client')
    assert.deepEqual(result.token.audience, [RESOURCE])
    assert.equal(typeof result.token.expiresAt, 'number')
    assert.equal(idp.introspections - before, 1)
  })

  test('the result is cached: a second check does not call the endpoint', async () => {
    const guard = await guardFor()
    const token = await idp.issueToken()
    const before = idp.introspections
    for (let i = 0; i < 3; i++) assert.equal((await guard.check(bearer(token))).ok, true)
    assert.equal(idp.introspections - before, 1)
  })

  const inactive = [
    {
      name: 'a revoked token',
      token: async () => {
        const token = await idp.issueToken()
        await idp.revoke(token)
        return token
      },
    },
    { name: 'an unknown token', token: async () => randomBytes(32).toString('base64url') },
  ]
  for (const c of inactive) {
    test(`${c.name}: token_inactive with an invalid_token challenge`, async () => {
      const guard = await guardFor()
      const result = await guard.check(bearer(await c.token()))
      assert.equal(result.ok ? 'ok' : result.error.code, 'token_inactive')
      assert.ok(!result.ok)
      assert.equal(result.response.status, 401)
      assert.equal(result.response.headers.get('www-authenticate'), invalidToken('token_inactive'))
    })
  }

  test('a token issued for another resource: audience_mismatch', async () => {
    const guard = await guardFor({}, { audiences: ['https://other.example.com/mcp'] })
    const result = await guard.check(bearer(await idp.issueToken()))
    assert.equal(result.ok ? 'ok' : result.error.code, 'audience_mismatch')
  })

  test('no introspection configured: token_opaque, and the provider is not asked', async () => {
    const guard = await guardFor(null)
    const before = idp.introspections
    const result = await guard.check(bearer(await idp.issueToken()))
    assert.equal(result.ok ? 'ok' : result.error.code, 'token_opaque')
    assert.ok(!result.ok)
    assert.equal(result.response.headers.get('www-authenticate'), invalidToken('token_opaque'))
    assert.equal(idp.introspections, before)
  })

  test('a wrong client secret: authorization_server_unavailable naming the endpoint and the 401', async () => {
    const guard = await guardFor({ clientSecret: 'not-the-secret' })
    const result = await guard.check(bearer(await idp.issueToken()))
    assert.equal(result.ok ? 'ok' : result.error.code, 'authorization_server_unavailable')
    assert.ok(!result.ok)
    assert.ok(
      result.error.message.includes(`introspection at ${idp.introspectionEndpoint}`),
      result.error.message,
    )
    assert.match(result.error.message, /HTTP 401/)
  })

  test('a wrong client secret: the message says the credentials were refused and which client', async () => {
    const guard = await guardFor({ clientSecret: 'not-the-secret' })
    const result = await guard.check(bearer(await idp.issueToken()))
    assert.ok(!result.ok)
    assert.match(result.error.message, /credentials/)
    assert.ok(result.error.message.includes(idp.resourceServer.clientId), result.error.message)
  })
})

describe('introspection endpoint down', () => {
  const outages = [
    {
      name: 'provider stopped after start',
      setUp: async () => {
        const own = await startOpaqueIdp({ resource: RESOURCE })
        const guard = await createGuard({
          resource: RESOURCE,
          authorizationServers: [{ issuer: own.issuer, introspection: own.resourceServer }],
          logger: quietLogger,
        })
        const token = await own.issueToken()
        await own.close()
        // Whether the pooled keep-alive socket or a new connection fails first is up to undici.
        return { guard, token, reason: /connection refused|other side closed/, cleanUp: async () => {} }
      },
    },
    {
      name: 'endpoint answers HTTP 500',
      setUp: async () => {
        const broken = await startScriptedServer()
        broken.route('/introspect', { status: 500 })
        const guard = await guardFor({ endpoint: `${broken.origin}/introspect` })
        return { guard, token: await idp.issueToken(), reason: /answered HTTP 500/, cleanUp: broken.close }
      },
    },
    {
      name: 'endpoint on a closed port',
      setUp: async () => {
        const guard = await guardFor({ endpoint: `${await closedOrigin()}/introspect` })
        return { guard, token: await idp.issueToken(), reason: /connection refused/, cleanUp: async () => {} }
      },
    },
  ]
  for (const outage of outages) {
    test(`${outage.name}: 503 authorization_server_unavailable with Retry-After`, async (t) => {
      const { guard, token, reason, cleanUp } = await outage.setUp()
      t.after(cleanUp)
      const result = await guard.check(bearer(token))
      assert.equal(result.ok ? 'ok' : result.error.code, 'authorization_server_unavailable')
      assert.ok(!result.ok)
      assert.match(result.error.message, reason)
      assert.equal(result.response.status, 503)
      assert.equal(result.response.headers.get('retry-after'), '5')
      assert.equal(result.response.headers.get('www-authenticate'), null)
      assert.deepEqual(await result.response.json(), {
        error: 'temporarily_unavailable',
        error_description: GUARD_ERRORS.authorization_server_unavailable.description,
      })
    })
  }
})

describe('hostile introspection answers', () => {
  const now = () => Math.floor(Date.now() / 1000)
  const answers = [
    { name: 'active as a string', body: () => ({ active: 'true', aud: RESOURCE }), code: 'token_inactive' },
    {
      name: 'another issuer',
      body: () => ({ active: true, aud: RESOURCE, iss: 'https://evil.example.com' }),
      code: 'issuer_untrusted',
    },
    {
      name: 'a refresh token',
      body: () => ({ active: true, aud: RESOURCE, token_type: 'refresh_token' }),
      code: 'token_type_invalid',
    },
    {
      name: 'exp in the past',
      body: () => ({ active: true, aud: RESOURCE, exp: now() - 10 }),
      code: 'token_expired',
    },
    {
      name: 'exp not a number',
      body: () => ({ active: true, aud: RESOURCE, exp: 'soon' }),
      code: 'claim_invalid',
    },
    { name: 'no aud', body: () => ({ active: true }), code: 'audience_mismatch' },
  ] as const
  for (const answer of answers) {
    test(`${answer.name}: ${answer.code}`, async (t) => {
      const endpoint = await startScriptedServer()
      t.after(endpoint.close)
      endpoint.route('/introspect', { body: answer.body() })
      const guard = await guardFor({ endpoint: `${endpoint.origin}/introspect` })
      const result = await guard.check(bearer(randomBytes(32).toString('base64url')))
      assert.equal(result.ok ? 'ok' : result.error.code, answer.code)
    })
  }

  test('an introspection endpoint on plain http off loopback: createGuard refuses with config_invalid', async () => {
    const endpoint = 'http://introspect.example.com/introspect'
    await assert.rejects(guardFor({ endpoint }), (error: Error & { code: string }) => {
      assert.equal(error.code, 'config_invalid')
      assert.ok(error.message.includes(endpoint), error.message)
      return true
    })
  })
})
