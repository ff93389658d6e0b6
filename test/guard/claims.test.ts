import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { createGuard, type Guard, type GuardErrorCode, type GuardOptions } from '../../src/guard/index.ts'
import { capturingLogger } from '../support/capturing_logger.ts'
import { signJws } from '../support/forge.ts'
import { bearerRequest, expectCheck } from '../support/guard_check.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

// RS-4 of security-cases.md A.2: time, issuer, key-issuer binding, audience and scope claims.

const RESOURCE = 'https://mcp.example.com/mcp'
const METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp'
/** An issuer name that the test IdP's keys stand for, so issuer spellings (https, :443) can be forged. */
const NAMED_ISSUER = 'https://as.example.com'

let trusted: TestIdp
let untrusted: TestIdp
let rsa: TestIdp
let guard: Guard
let namedIssuerGuard: Guard
let multiIssuerGuard: Guard

const guardFor = (options: Partial<GuardOptions> = {}): Promise<Guard> =>
  createGuard({
    resource: RESOURCE,
    authorizationServers: [{ issuer: trusted.issuer }],
    cacheSeconds: 0,
    logger: capturingLogger(),
    ...options,
  })

before(async () => {
  const resources = { [RESOURCE]: 'files:read files:write' }
  ;[trusted, untrusted, rsa] = await Promise.all([
    startTestIdp({ resources }),
    startTestIdp({ resources }),
    startTestIdp({ resources, alg: 'RS256' }),
  ])
  ;[guard, namedIssuerGuard, multiIssuerGuard] = await Promise.all([
    guardFor(),
    guardFor({ authorizationServers: [{ issuer: NAMED_ISSUER, jwksUri: `${trusted.issuer}/jwks` }] }),
    guardFor({ authorizationServers: [{ issuer: trusted.issuer }, { issuer: rsa.issuer }] }),
  ])
})

after(() => Promise.all([trusted.close(), untrusted.close(), rsa.close()]))

const now = () => Math.floor(Date.now() / 1000)

/** RFC 9068 claims from `idp`, with members replaced or (as `undefined`) removed. */
function claimsFor(idp: TestIdp, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const t = now()
  return {
    iss: idp.issuer,
    aud: RESOURCE,
    sub: 'user-1',
    client_id: 'test-client',
    iat: t,
    exp: t + 300,
    jti: randomUUID(),
    scope: 'files:read',
    ...extra,
  }
}

/** Signed with `signer`'s real key and kid; the claims default to those `signer` would issue. */
function forge(
  signer: TestIdp,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): string {
  const alg = signer === rsa ? 'RS256' : 'ES256'
  return signJws(
    { alg, typ: 'at+jwt', kid: signer.kid, ...header },
    claimsFor(signer, claims),
    signer.signingKey,
  )
}

interface Case {
  name: string
  token: () => string | Promise<string>
  code: GuardErrorCode | 'accepted'
  guard?: () => Guard
}

function runCases(cases: Case[]): void {
  for (const c of cases) {
    it(c.name, async () => {
      await expectCheck((c.guard ?? (() => guard))(), bearerRequest(RESOURCE, await c.token()), c.code)
    })
  }
}

describe('RS-4 time claims (skew 30 s, max lifetime 24 h)', () => {
  const timed = (name: string, claims: () => Record<string, unknown>, code: Case['code']): Case => ({
    name,
    token: () => forge(trusted, claims()),
    code,
  })
  runCases([
    timed('control: exp in 5 minutes', () => ({}), 'accepted'),
    timed('exp missing', () => ({ exp: undefined }), 'claim_invalid'),
    timed('exp past, beyond the skew', () => ({ iat: now() - 400, exp: now() - 60 }), 'token_expired'),
    timed('exp past, within the skew', () => ({ iat: now() - 400, exp: now() - 10 }), 'accepted'),
    timed('exp a numeric string', () => ({ exp: String(now() + 300) }), 'claim_invalid'),
    timed('exp a float', () => ({ exp: now() + 300.5 }), 'claim_invalid'),
    timed('exp 1e308', () => ({ exp: 1e308 }), 'claim_invalid'),
    timed('exp negative', () => ({ exp: -1 }), 'claim_invalid'),
    timed('exp zero', () => ({ exp: 0 }), 'claim_invalid'),
    timed('exp null', () => ({ exp: null }), 'claim_invalid'),
    timed('nbf future, beyond the skew', () => ({ nbf: now() + 120 }), 'token_not_yet_valid'),
    timed('nbf future, inside the skew', () => ({ nbf: now() + 10 }), 'accepted'),
    timed('nbf a string', () => ({ nbf: String(now()) }), 'claim_invalid'),
    timed('iat future, beyond the skew', () => ({ iat: now() + 120 }), 'token_not_yet_valid'),
    timed('iat future, inside the skew', () => ({ iat: now() + 10 }), 'accepted'),
    timed('iat a float', () => ({ iat: now() + 0.5 }), 'claim_invalid'),
    timed('exp - iat exactly 24 h', () => ({ iat: now(), exp: now() + 86_400 }), 'accepted'),
    timed('exp - iat over 24 h', () => ({ iat: now(), exp: now() + 86_401 }), 'token_lifetime_too_long'),
    timed(
      'no iat and exp over 24 h away',
      () => ({ iat: undefined, exp: now() + 90_000 }),
      'token_lifetime_too_long',
    ),
  ])
})

describe('RS-4 other claim types (RFC 9068 §2.2)', () => {
  const typed = (name: string, claims: Record<string, unknown>, code: Case['code']): Case => ({
    name,
    token: () => forge(trusted, claims),
    code,
  })
  runCases([
    typed('sub a number', { sub: 42 }, 'claim_invalid'),
    typed('client_id an array', { client_id: ['test-client'] }, 'claim_invalid'),
    typed('azp a number when client_id is absent', { client_id: undefined, azp: 7 }, 'claim_invalid'),
    typed('cnf not an object', { cnf: 'jkt' }, 'claim_invalid'),
  ])
  it('client_id falls back to azp', async () => {
    const token = await guard.verifyToken(forge(trusted, { client_id: undefined, azp: 'azp-client' }))
    assert.equal(token.clientId, 'azp-client')
  })
})

describe('RS-4 iss is compared as an exact string', () => {
  const named = (iss: unknown, code: Case['code']): Case => ({
    name: `iss ${JSON.stringify(iss)} against ${NAMED_ISSUER}`,
    token: () => forge(trusted, { iss }),
    code,
    guard: () => namedIssuerGuard,
  })
  runCases([
    named(NAMED_ISSUER, 'accepted'),
    named(`${NAMED_ISSUER}/`, 'issuer_trailing_slash'),
    named('https://AS.example.com', 'issuer_untrusted'),
    named('HTTPS://as.example.com', 'issuer_untrusted'),
    named('http://as.example.com', 'issuer_untrusted'),
    named('https://as.example.com:443', 'issuer_untrusted'),
    named('https://as.example.com/tenant', 'issuer_untrusted'),
    named('https://as.example.com ', 'issuer_untrusted'),
    named(undefined, 'claim_invalid'),
    named(42, 'claim_invalid'),
    named([NAMED_ISSUER], 'claim_invalid'),
    {
      name: 'the trusted test IdP with a trailing slash',
      token: () => forge(trusted, { iss: `${trusted.issuer}/` }),
      code: 'issuer_trailing_slash',
    },
  ])
})

describe('RS-4 key-issuer binding: one JWKS per issuer', () => {
  runCases([
    {
      name: 'a real token from the untrusted IdP',
      token: () => untrusted.issueToken({ scope: 'files:read' }),
      code: 'issuer_untrusted',
    },
    {
      name: 'iss = trusted, signed by the untrusted IdP with its own kid',
      token: () => forge(untrusted, { iss: trusted.issuer }),
      code: 'key_not_found',
    },
    {
      name: "iss = trusted, signed by the untrusted IdP under the trusted IdP's kid",
      token: () => forge(untrusted, { iss: trusted.issuer }, { kid: trusted.kid }),
      code: 'signature_invalid',
    },
    {
      name: 'iss = trusted, signed by the untrusted IdP without kid',
      token: () => forge(untrusted, { iss: trusted.issuer }, { kid: undefined }),
      code: 'signature_invalid',
    },
    ...[
      ['trusted', () => forge(trusted), 'accepted'],
      ['RSA', () => forge(rsa), 'accepted'],
      ['trusted, signed with the RSA key', () => forge(rsa, { iss: trusted.issuer }), 'key_not_found'],
      ['RSA, signed with the trusted EC key', () => forge(trusted, { iss: rsa.issuer }), 'key_not_found'],
    ].map(
      ([who, token, code]): Case => ({
        name: `two trusted issuers: iss = ${who}`,
        token: token as () => string,
        code: code as Case['code'],
        guard: () => multiIssuerGuard,
      }),
    ),
  ])
})

describe('RS-4 aud (resource https://mcp.example.com/mcp)', () => {
  const logger = capturingLogger()
  let anyAudience: Guard
  let explicitAudiences: Guard
  before(async () => {
    ;[anyAudience, explicitAudiences] = await Promise.all([
      guardFor({ allowAnyAudience: true, logger }),
      guardFor({ audiences: [RESOURCE, `${RESOURCE}/`] }),
    ])
  })
  const aud = (value: unknown, code: Case['code'], which?: () => Guard): Case => ({
    name: `aud ${JSON.stringify(value)}${which ? ' (configured)' : ''}`,
    token: () => forge(trusted, { aud: value }),
    code,
    guard: which,
  })
  runCases([
    aud(RESOURCE, 'accepted'),
    aud(['https://other.example/api', RESOURCE], 'accepted'),
    aud(['https://other.example/api', 'https://mcp.example.com/other'], 'audience_mismatch'),
    aud(undefined, 'audience_mismatch'),
    aud([], 'audience_mismatch'),
    aud([42], 'audience_mismatch'),
    aud({ resource: RESOURCE }, 'audience_mismatch'),
    aud('test-client', 'audience_mismatch'),
    aud(`${RESOURCE}/`, 'audience_mismatch'),
    aud('http://mcp.example.com/mcp', 'audience_mismatch'),
    aud('https://mcp.example.com/MCP', 'audience_mismatch'),
    aud('HTTPS://MCP.EXAMPLE.COM/mcp', 'accepted'),
    aud('https://Mcp.Example.Com/mcp', 'accepted'),
    aud(`${RESOURCE}/`, 'accepted', () => explicitAudiences),
    aud('https://other.example/api', 'audience_mismatch', () => explicitAudiences),
    {
      ...aud('https://other.example/api', 'accepted', () => anyAudience),
      name: 'any aud with allowAnyAudience',
    },
    { ...aud(undefined, 'accepted', () => anyAudience), name: 'no aud with allowAnyAudience' },
  ])
  it('allowAnyAudience is warned about once, at start', () => {
    const warnings = logger.entries.filter((e) => e.level === 'warn')
    assert.equal(warnings.length, 1)
    assert.match(warnings[0]?.message ?? '', /^allow_any_audience is on: tokens issued for ANY audience/)
  })
})

describe('RS-4 scope and scp parsing', () => {
  const cases: { name: string; claims: Record<string, unknown>; scopes: string[] | GuardErrorCode }[] = [
    {
      name: 'scope string',
      claims: { scope: 'files:read files:write' },
      scopes: ['files:read', 'files:write'],
    },
    {
      name: 'scope with extra spaces',
      claims: { scope: ' files:read   files:write ' },
      scopes: ['files:read', 'files:write'],
    },
    {
      name: 'scp string',
      claims: { scope: undefined, scp: 'files:read files:write' },
      scopes: ['files:read', 'files:write'],
    },
    {
      name: 'scp array',
      claims: { scope: undefined, scp: ['files:read', 'files:write'] },
      scopes: ['files:read', 'files:write'],
    },
    {
      name: 'scope wins over scp',
      claims: { scope: 'files:read', scp: ['files:write'] },
      scopes: ['files:read'],
    },
    { name: 'neither', claims: { scope: undefined }, scopes: [] },
    { name: 'scope an array', claims: { scope: ['files:read'] }, scopes: 'claim_invalid' },
    {
      name: 'scp with a number',
      claims: { scope: undefined, scp: ['files:read', 1] },
      scopes: 'claim_invalid',
    },
    {
      name: 'scp an object',
      claims: { scope: undefined, scp: { 0: 'files:read' } },
      scopes: 'claim_invalid',
    },
  ]
  for (const c of cases) {
    it(c.name, async () => {
      const outcome = await guard.verifyToken(forge(trusted, c.claims)).then(
        (token) => token.scopes,
        (error: { code: string }) => error.code,
      )
      assert.deepEqual(outcome, c.scopes)
    })
  }
})

describe('RS-4 scope policy: 403 insufficient_scope with the scopes to ask for', () => {
  const cases: {
    name: string
    options: Partial<GuardOptions>
    granted: string
    operationScopes?: string[]
    /** The `scope` of the 403 challenge, or `accepted`. */
    challengeScope: string | 'accepted'
  }[] = [
    {
      name: 'require_all, granted',
      options: { scopes: ['files:read'] },
      granted: 'files:read',
      challengeScope: 'accepted',
    },
    {
      name: 'require_all, missing',
      options: { scopes: ['files:read'] },
      granted: 'other',
      challengeScope: 'files:read',
    },
    {
      name: 'require_all, one of two missing: the granted relevant scope is kept',
      options: { scopes: ['files:read', 'files:write'] },
      granted: 'files:read',
      challengeScope: 'files:read files:write',
    },
    {
      name: 'require_any, one of two granted',
      options: { scopes: ['files:read', 'files:write'], scopeMode: 'require_any' },
      granted: 'files:write',
      challengeScope: 'accepted',
    },
    {
      name: 'require_any, none granted',
      options: { scopes: ['files:read', 'files:write'], scopeMode: 'require_any' },
      granted: 'other',
      challengeScope: 'files:read files:write',
    },
    {
      name: 'disabled, none granted',
      options: { scopes: ['files:read'], scopeMode: 'disabled' },
      granted: '',
      challengeScope: 'accepted',
    },
    {
      name: 'a broader scope satisfies a narrower one',
      options: { scopes: ['files:read'], scopeImplications: { 'files:write': ['files:read'] } },
      granted: 'files:write',
      challengeScope: 'accepted',
    },
    {
      name: 'implication is transitive',
      options: {
        scopes: ['files:read'],
        scopeImplications: { admin: ['files:write'], 'files:write': ['files:read'] },
      },
      granted: 'admin',
      challengeScope: 'accepted',
    },
    {
      name: 'a narrower scope does not satisfy a broader one',
      options: { scopes: ['files:write'], scopeImplications: { 'files:write': ['files:read'] } },
      granted: 'files:read',
      challengeScope: 'files:write',
    },
    {
      name: "an operation's own scopes add to the guard's",
      options: { scopes: [], scopesSupported: ['files:read'] },
      granted: 'files:read other',
      operationScopes: ['tools:call'],
      challengeScope: 'files:read tools:call',
    },
  ]
  for (const c of cases) {
    it(c.name, async () => {
      const scoped = await guardFor(c.options)
      const result = await scoped.check(bearerRequest(RESOURCE, forge(trusted, { scope: c.granted })), {
        scopes: c.operationScopes,
      })
      if (c.challengeScope === 'accepted') {
        assert.equal(result.ok, true)
        return
      }
      if (result.ok) return assert.fail('the token was accepted')
      assert.equal(result.error.code, 'insufficient_scope')
      assert.equal(result.response.status, 403)
      assert.equal(
        result.response.headers.get('www-authenticate'),
        'Bearer error="insufficient_scope", error_description="the access token lacks the scopes this operation requires", ' +
          `scope="${c.challengeScope}", resource_metadata="${METADATA}"`,
      )
    })
  }
})
