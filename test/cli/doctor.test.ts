/**
 * `gatehouse doctor` against a real oidc-provider and broken set-ups: each verdict on a token is the guard's
 * own (same code as a guard built from the same options), and each failure carries its fix.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type DoctorReport, diagnose } from '../../src/cli/doctor.ts'
import { createGuard, type GuardOptions, isGuardError } from '../../src/guard/index.ts'
import { gatehouse, startEmbeddedGateway } from '../support/embedded-gateway.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'
import { closedOrigin, type ScriptedServer, startScriptedServer } from '../support/jwks-server.ts'

const RESOURCE = 'https://mcp.example.com/mcp'
const check = (report: DoctorReport, name: string) => report.checks.find((c) => c.name === name)

describe('gatehouse doctor', () => {
  let idp: TestIdp
  let options: GuardOptions
  before(async () => {
    idp = await startTestIdp({ resources: { [RESOURCE]: 'tools:read' } })
    options = { resource: RESOURCE, authorizationServers: [{ issuer: idp.issuer }] }
  })
  after(() => idp.close())

  test('a sound provider and a token it issued: every check passes', async () => {
    const report = await diagnose(options, await idp.issueToken({ resource: RESOURCE }))
    assert.equal(report.ok, true, JSON.stringify(report.checks, null, 2))
    assert.equal(check(report, 'discovery')?.status, 'pass')
    assert.equal(check(report, 'jwks')?.status, 'pass')
    assert.equal(check(report, 'pkce')?.status, 'pass')
    assert.equal(check(report, 'token')?.status, 'pass')
    assert.ok(report.token && 'claims' in report.token)
    assert.equal((report.token.claims as { aud: string }).aud, RESOURCE)
  })

  test('an issuer that is not an http(s) URL is refused before any request, with what to give', async () => {
    const seen: string[] = []
    await assert.rejects(
      diagnose(
        { resource: RESOURCE, authorizationServers: [{ issuer: 'tenant.auth0.com' }] },
        undefined,
        (c) => seen.push(c.name),
      ),
      /issuer "tenant.auth0.com" is not an http\(s\) URL: give it exactly as the provider publishes it/,
    )
    assert.deepEqual(seen, [])
  })

  test('each check is handed out as soon as it is decided, in the order of the report', async () => {
    const seen: string[] = []
    let finished = false
    const report = await diagnose(options, await idp.issueToken({ resource: RESOURCE }), (decided) => {
      assert.equal(finished, false, 'handed out before the report is complete')
      seen.push(decided.name)
    })
    finished = true
    assert.deepEqual(
      seen,
      report.checks.map((c) => c.name),
    )
  })

  test("the verdict on each broken token is the guard's own code, with a fix", async () => {
    const now = Math.floor(Date.now() / 1000)
    const claims = { iss: idp.issuer, aud: RESOURCE, sub: 'alice', iat: now, exp: now + 300 }
    const tokens = {
      token_opaque: 'an-opaque-access-token-from-a-provider-without-an-api',
      token_expired: await idp.sign({ ...claims, iat: now - 3600, exp: now - 1800 }),
      audience_mismatch: await idp.sign({ ...claims, aud: 'https://other.example.com/mcp' }),
      token_type_invalid: await idp.sign(claims, { typ: 'id+jwt' }),
      key_not_found: await idp.sign(claims, { kid: 'not-a-published-kid' }),
      issuer_trailing_slash: await idp.sign({ ...claims, iss: `${idp.issuer}/` }),
    }
    const guard = await createGuard({ ...options, cacheSeconds: 0, logger: { warn() {}, info() {} } })
    for (const [code, token] of Object.entries(tokens)) {
      const guardCode = await guard.verifyToken(token).then(
        () => 'accepted',
        (error) => (isGuardError(error) ? error.code : 'crashed'),
      )
      const report = await diagnose(options, token)
      const verdict = check(report, 'token')
      assert.equal(guardCode, code)
      assert.equal(verdict?.code, guardCode, `${code}: ${JSON.stringify(verdict)}`)
      assert.equal(verdict?.status, 'fail')
      assert.ok(verdict?.fix, `${code} has a fix`)
      assert.equal(report.ok, false)
    }
  })

  test('an opaque token: told to configure the provider to issue JWTs', async () => {
    const report = await diagnose(options, 'opaque-token-value')
    assert.deepEqual(report.token, { opaque: true })
    assert.match(check(report, 'token')?.fix ?? '', /issue JWT access tokens for an API/)
  })

  test('an issuer configured with a trailing slash fails discovery, with the fix', async () => {
    const report = await diagnose({ ...options, authorizationServers: [{ issuer: `${idp.issuer}/` }] })
    assert.equal(report.ok, false)
    const discovery = check(report, 'discovery')
    assert.equal(discovery?.status, 'fail')
    assert.equal(discovery?.code, 'discovery_failed')
    assert.match(discovery?.detail ?? '', /trailing slash/)
    assert.ok(report.checks.some((c) => c.name.startsWith('metadata ') && /byte for byte/.test(c.fix ?? '')))
  })

  describe('a provider whose JWKS cannot be reached', () => {
    let server: ScriptedServer
    before(async () => {
      server = await startScriptedServer()
      server.route('/.well-known/oauth-authorization-server', {
        body: {
          issuer: server.origin,
          jwks_uri: `${await closedOrigin()}/jwks`,
          authorization_endpoint: `${server.origin}/authorize`,
          token_endpoint: `${server.origin}/token`,
          code_challenge_methods_supported: ['plain'],
        },
      })
    })
    after(() => server.close())

    test('fails the jwks and pkce checks, and the token is not accepted', async () => {
      const report = await diagnose(
        { resource: RESOURCE, authorizationServers: [{ issuer: server.origin }] },
        await idp.issueToken({ resource: RESOURCE }),
      )
      assert.equal(check(report, 'discovery')?.status, 'pass')
      assert.equal(check(report, 'jwks')?.code, 'authorization_server_unavailable')
      assert.equal(check(report, 'pkce')?.status, 'fail')
      assert.equal(check(report, 'registration')?.status, 'warn')
      assert.equal(check(report, 'token')?.code, 'authorization_server_unavailable')
    })
  })

  test('the embedded authorization server of gatehouse serve: metadata, JWKS, PKCE and DCR pass', async () => {
    const gateway = await startEmbeddedGateway({})
    try {
      const issuer = new URL(gateway.resource).origin
      const report = await diagnose({ resource: gateway.resource, authorizationServers: [{ issuer }] })
      assert.equal(report.ok, true, JSON.stringify(report.checks, null, 2))
      for (const name of ['discovery', 'jwks', 'pkce', 'registration'])
        assert.equal(check(report, name)?.status, 'pass', name)
    } finally {
      await gateway.close()
    }
  })

  test('the command: --token - reads standard input, --json for scripts, exit 1 on a failure', async () => {
    const good = await idp.issueToken({ resource: RESOURCE })
    const args = ['doctor', '--issuer', idp.issuer, '--audience', RESOURCE, '--token', '-', '--json']
    const ok = await gatehouse(args, good)
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(JSON.parse(ok.stdout).ok, true)
    const now = Math.floor(Date.now() / 1000)
    const expired = await idp.sign({ iss: idp.issuer, aud: RESOURCE, iat: now - 600, exp: now - 300 })
    const bad = await gatehouse([
      'doctor',
      '--issuer',
      idp.issuer,
      '--audience',
      RESOURCE,
      '--token',
      expired,
    ])
    assert.equal(bad.code, 1)
    assert.match(bad.stdout, /FAIL {2}token: .*\[token_expired\]\n {6}fix: get a new token/)
  })
})
