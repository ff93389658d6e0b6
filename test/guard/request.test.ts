import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createGuard, GUARD_ERRORS, type Guard, type GuardErrorCode } from '../../src/guard/index.ts'
import { capturingLogger } from '../support/capturing_logger.ts'
import { signJws } from '../support/forge.ts'
import { bearerRequest, expectCheck } from '../support/guard_check.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

// The request layer (RS-24 of security-cases.md A.2, RFC 6750, RFC 9728): where the token may come from,
// the challenges, the Protected Resource Metadata, and what reaches the logs.

const RESOURCE = 'https://mcp.example.com/mcp'
const OTHER_RESOURCE = 'https://other.example.com/mcp'
const METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp'
const ROOT_METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource'
const NO_TOKEN_CHALLENGE = `Bearer scope="files:read", resource_metadata="${METADATA}"`

let idp: TestIdp
let guard: Guard
let validToken: string
const logger = capturingLogger()

before(async () => {
  idp = await startTestIdp({
    resources: { [RESOURCE]: 'files:read files:write', [OTHER_RESOURCE]: 'files:read' },
  })
  guard = await createGuard({
    resource: RESOURCE,
    authorizationServers: [{ issuer: idp.issuer }],
    scopes: ['files:read'],
    logger,
  })
  validToken = await idp.issueToken({ scope: 'files:read' })
})

after(() => idp.close())

const request = (authorization: string[], url = RESOURCE): Request => {
  const headers = new Headers()
  for (const value of authorization) headers.append('authorization', value)
  return new Request(url, { headers })
}

describe('RS-24 where the token may come from', () => {
  const cases: {
    name: string
    request: () => Request
    code: GuardErrorCode | 'accepted'
    /** The exact WWW-Authenticate, or `null` for none. */
    challenge?: string | null
  }[] = [
    { name: 'no token', request: () => request([]), code: 'token_missing', challenge: NO_TOKEN_CHALLENGE },
    { name: 'an empty Authorization header', request: () => request(['']), code: 'token_missing' },
    {
      name: 'the token in ?access_token=',
      request: () => new Request(`${RESOURCE}?access_token=${validToken}`),
      code: 'token_in_query',
      challenge: null,
    },
    {
      name: 'the token in the header and in ?access_token=',
      request: () => request([`Bearer ${validToken}`], `${RESOURCE}?access_token=${validToken}`),
      code: 'token_in_query',
    },
    {
      name: 'two Authorization headers',
      request: () => request([`Bearer ${validToken}`, `Bearer ${validToken}`]),
      code: 'credentials_duplicated',
      challenge: null,
    },
    {
      name: 'two credentials in one header',
      request: () => request([`Bearer ${validToken}, Bearer ${validToken}`]),
      code: 'credentials_duplicated',
    },
    { name: 'Bearer', request: () => request([`Bearer ${validToken}`]), code: 'accepted' },
    { name: 'lowercase bearer', request: () => request([`bearer ${validToken}`]), code: 'accepted' },
    { name: 'uppercase BEARER', request: () => request([`BEARER ${validToken}`]), code: 'accepted' },
    {
      name: 'several spaces after the scheme',
      request: () => request([`Bearer   ${validToken}`]),
      code: 'accepted',
    },
    {
      name: 'Basic scheme',
      request: () => request(['Basic dGVzdC1jbGllbnQ6c2VjcmV0']),
      code: 'scheme_unsupported',
      challenge:
        'Bearer error="invalid_token", error_description="the Authorization header must use the Bearer or DPoP scheme", ' +
        `scope="files:read", resource_metadata="${METADATA}"`,
    },
    {
      name: 'an unknown scheme',
      request: () => request([`Token ${validToken}`]),
      code: 'scheme_unsupported',
    },
    { name: 'the token without a scheme', request: () => request([validToken]), code: 'scheme_unsupported' },
    { name: 'Bearer with no token', request: () => request(['Bearer']), code: 'token_malformed' },
    {
      name: 'Bearer with two words',
      request: () => request([`Bearer ${validToken} x`]),
      code: 'token_malformed',
    },
    {
      name: 'Bearer with a character outside token68',
      request: () => request([`Bearer ${validToken}!`]),
      code: 'token_malformed',
    },
  ]
  for (const c of cases) {
    it(c.name, async () => {
      const result = await expectCheck(guard, c.request(), c.code)
      if (c.challenge === undefined) return
      assert.equal(result.ok ? 'accepted' : result.response.headers.get('www-authenticate'), c.challenge)
    })
  }
})

describe('challenges and error responses', () => {
  it('no token: 401, no error code, a bare body', async () => {
    const result = await guard.check(request([]))
    if (result.ok) return assert.fail('accepted without a token')
    assert.equal(result.response.status, 401)
    assert.equal(result.response.headers.get('www-authenticate'), NO_TOKEN_CHALLENGE)
    assert.deepEqual(await result.response.json(), { error: 'unauthorized' })
  })

  it('an invalid token: the registry error and description in the body, no-store, challenge exposed to CORS', async () => {
    const result = await guard.check(bearerRequest(RESOURCE, `${validToken.slice(0, -4)}AAAA`))
    if (result.ok) return assert.fail('a tampered token was accepted')
    assert.equal(result.error.code, 'signature_invalid')
    assert.deepEqual(await result.response.json(), {
      error: 'invalid_token',
      error_description: GUARD_ERRORS.signature_invalid.description,
    })
    assert.equal(result.response.headers.get('cache-control'), 'no-store')
    assert.equal(result.response.headers.get('access-control-expose-headers'), 'WWW-Authenticate')
  })

  for (const [code, build] of [
    ['token_missing', () => request([])],
    ['token_in_query', () => new Request(`${RESOURCE}?access_token=x`)],
  ] as const) {
    it(`${code}: Access-Control-Expose-Headers names WWW-Authenticate`, async () => {
      const result = await guard.check(build())
      assert.equal(
        result.ok ? 'accepted' : result.response.headers.get('access-control-expose-headers'),
        'WWW-Authenticate',
      )
    })
  }

  it('quotes " and \\ inside challenge values (RFC 9110 §5.6.4)', async () => {
    const quoting = await createGuard({
      resource: RESOURCE,
      authorizationServers: [{ issuer: idp.issuer }],
      scopes: ['say"hi', 'back\\slash'],
      logger: capturingLogger(),
    })
    const result = await quoting.check(request([]))
    assert.equal(
      result.ok ? 'accepted' : result.response.headers.get('www-authenticate'),
      `Bearer scope="say\\"hi back\\\\slash", resource_metadata="${METADATA}"`,
    )
  })
})

describe('Protected Resource Metadata (RFC 9728)', () => {
  const document = () => ({
    resource: RESOURCE,
    authorization_servers: [idp.issuer],
    bearer_methods_supported: ['header'],
    scopes_supported: ['files:read'],
    dpop_signing_alg_values_supported: ['ES256', 'EdDSA', 'PS256', 'RS256'],
  })

  it('resource_metadata of the challenges is the path-inserted URL', () => {
    assert.equal(guard.resourceMetadataUrl, METADATA)
  })

  for (const url of [METADATA, ROOT_METADATA]) {
    it(`GET ${new URL(url).pathname}: the document, with CORS`, async () => {
      const response = guard.metadataResponse(new Request(url))
      assert.ok(response)
      assert.equal(response.status, 200)
      assert.equal(response.headers.get('access-control-allow-origin'), '*')
      assert.match(response.headers.get('content-type') ?? '', /^application\/json/)
      assert.deepEqual(await response.json(), document())
    })

    it(`OPTIONS ${new URL(url).pathname}: 204 preflight`, () => {
      const response = guard.metadataResponse(new Request(url, { method: 'OPTIONS' }))
      assert.equal(response?.status, 204)
      assert.equal(response?.headers.get('access-control-allow-origin'), '*')
      assert.equal(response?.headers.get('access-control-allow-methods'), 'GET, OPTIONS')
    })

    it(`POST ${new URL(url).pathname}: 405`, () => {
      const response = guard.metadataResponse(new Request(url, { method: 'POST', body: '{}' }))
      assert.equal(response?.status, 405)
      assert.equal(response?.headers.get('allow'), 'GET, HEAD, OPTIONS')
    })
  }

  for (const url of [RESOURCE, `${ROOT_METADATA}/other`, `${METADATA}/`]) {
    it(`not served at ${new URL(url).pathname}`, () => {
      assert.equal(guard.metadataResponse(new Request(url)), undefined)
    })
  }
})

describe("tokens from the IdP's real token endpoint", () => {
  it('pass, and the VerifiedToken carries who and what', async () => {
    const token = await idp.issueToken({ scope: 'files:read files:write' })
    const before = Math.floor(Date.now() / 1000)
    const result = await expectCheck(guard, bearerRequest(RESOURCE, token), 'accepted')
    assert.ok(result.ok)
    const verified = result.token
    assert.equal(verified.token, token)
    assert.equal(verified.issuer, idp.issuer)
    assert.equal(verified.subject, 'test-client')
    assert.equal(verified.clientId, 'test-client')
    assert.deepEqual(verified.scopes, ['files:read', 'files:write'])
    assert.deepEqual(verified.audience, [RESOURCE])
    assert.equal(verified.via, 'jwt')
    // The test IdP issues for 300 s.
    assert.ok(
      verified.expiresAt !== undefined && verified.expiresAt - before <= 300 && verified.expiresAt > before,
    )
  })

  it('one issued for another resource is refused', async () => {
    const token = await idp.issueToken({ resource: OTHER_RESOURCE, scope: 'files:read' })
    await expectCheck(guard, bearerRequest(RESOURCE, token), 'audience_mismatch')
  })
})

describe('no token in the logs', () => {
  const now = () => Math.floor(Date.now() / 1000)
  const forged = (claims: Record<string, unknown>) =>
    signJws(
      { alg: 'ES256', typ: 'at+jwt', kid: idp.kid },
      { iss: idp.issuer, aud: RESOURCE, sub: 'user-1', iat: now(), exp: now() + 300, ...claims },
      idp.signingKey,
    )
  const cases: { name: string; token: () => string | Promise<string>; send?: (token: string) => Request }[] =
    [
      { name: 'expired', token: () => forged({ iat: now() - 900, exp: now() - 600 }) },
      {
        name: 'another audience',
        token: () => idp.issueToken({ resource: OTHER_RESOURCE, scope: 'files:read' }),
      },
      { name: 'insufficient scope', token: () => forged({ scope: 'files:write' }) },
      { name: 'tampered signature', token: async () => `${(await idp.issueToken()).slice(0, -4)}AAAA` },
      { name: 'untrusted issuer', token: () => forged({ iss: 'https://evil.example' }) },
      { name: 'opaque', token: () => 'opaque-secret-token-value' },
      {
        name: 'in the query',
        token: () => idp.issueToken(),
        send: (t) => new Request(`${RESOURCE}?access_token=${t}`),
      },
      { name: 'malformed header', token: () => idp.issueToken(), send: (t) => request([`Bearer ${t} ${t}`]) },
    ]
  for (const c of cases) {
    it(`${c.name}: the refusal is logged without the token`, async () => {
      const token = await c.token()
      const logged = logger.entries.length
      const result = await guard.check(c.send ? c.send(token) : bearerRequest(RESOURCE, token))
      assert.equal(result.ok, false)
      const entries = logger.entries.slice(logged)
      assert.equal(entries.length, 1)
      assert.equal(entries[0]?.fields?.code, result.ok ? 'accepted' : result.error.code)
      const signature = token.split('.').at(-1) as string
      for (const secret of [token, signature]) {
        assert.ok(!logger.text().includes(secret), 'a token reached the logs')
        assert.ok(result.ok || !result.error.message.includes(secret), 'a token is in the error message')
      }
    })
  }
})
