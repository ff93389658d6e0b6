/**
 * The first run with the provider people already have, configured from the environment as the product has
 * it (OAUTH_ISSUER_URL, OAUTH_AUDIENCE): each case against a real oidc-provider behaving like that provider.
 * The log (the operator's) says what to change; the client gets only the public description.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createGuard, type GuardLogger, guardOptionsFromEnv } from '../../src/guard/index.ts'
import { bearerRequest, expectCheck } from '../support/guard_check.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'
import { type OpaqueIdp, startOpaqueIdp } from '../support/idp-opaque.ts'

const RESOURCE = 'https://mcp.example.com/mcp'
/** An Auth0 API identifier other than the MCP URL. */
const API = 'https://api.example.com'

let plainJwt: TestIdp
let opaque: OpaqueIdp

before(async () => {
  ;[plainJwt, opaque] = await Promise.all([
    startTestIdp({ resources: { [RESOURCE]: 'mcp', [API]: 'mcp' }, accessTokenTyp: 'JWT' }),
    startOpaqueIdp({ resource: RESOURCE }),
  ])
})
after(() => Promise.all([plainJwt.close(), opaque.close()]))

function capture(): { logger: GuardLogger; warnings: string[] } {
  const warnings: string[] = []
  return {
    warnings,
    logger: { warn: (message, fields) => warnings.push(`${message} ${JSON.stringify(fields)}`), info() {} },
  }
}

async function guardFromEnv(env: Record<string, string>, logger?: GuardLogger) {
  return createGuard({ ...guardOptionsFromEnv(env, RESOURCE), cacheSeconds: 0, ...(logger && { logger }) })
}

describe('a provider that issues typ JWT access tokens (Auth0, Okta, Entra, Keycloak)', () => {
  it('its token for this resource passes with OAUTH_ISSUER_URL alone', async () => {
    const token = await plainJwt.issueToken({ resource: RESOURCE })
    assert.equal(JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()).typ, 'JWT')
    const guard = await guardFromEnv({ OAUTH_ISSUER_URL: plainJwt.issuer })
    await expectCheck(guard, bearerRequest(RESOURCE, token), 'accepted')
  })

  it('its token for another API identifier: refused, naming OAUTH_ACCEPT_PLAIN_JWT, which lets it pass', async () => {
    const token = await plainJwt.issueToken({ resource: API })
    const { logger, warnings } = capture()
    const refusing = await guardFromEnv({ OAUTH_ISSUER_URL: plainJwt.issuer, OAUTH_AUDIENCE: API }, logger)
    await expectCheck(refusing, bearerRequest(RESOURCE, token), 'token_type_invalid')
    assert.match(warnings.join('\n'), /token_type_invalid.*OAUTH_ACCEPT_PLAIN_JWT=true/)
    const accepting = await guardFromEnv({
      OAUTH_ISSUER_URL: plainJwt.issuer,
      OAUTH_AUDIENCE: API,
      OAUTH_ACCEPT_PLAIN_JWT: 'true',
    })
    await expectCheck(accepting, bearerRequest(RESOURCE, token), 'accepted')
  })

  it('OAUTH_ACCEPT_PLAIN_JWT takes true or false only', () => {
    assert.throws(
      () =>
        guardOptionsFromEnv({ OAUTH_ISSUER_URL: plainJwt.issuer, OAUTH_ACCEPT_PLAIN_JWT: 'yes' }, RESOURCE),
      /OAUTH_ACCEPT_PLAIN_JWT is "yes": set it to true or false/,
    )
  })
})

describe('the refusals a first run meets, in the log', () => {
  it('an opaque token: the provider must be told the API identifier (Auth0: audience)', async () => {
    const { logger, warnings } = capture()
    const guard = await guardFromEnv({ OAUTH_ISSUER_URL: opaque.issuer }, logger)
    const result = await expectCheck(
      guard,
      bearerRequest(RESOURCE, await opaque.issueToken()),
      'token_opaque',
    )
    assert.ok(!result.ok)
    assert.match(
      warnings.join('\n'),
      /token_opaque.*opaque .*tell the provider the API identifier.*Auth0: the audience parameter, or a default audience/,
    )
    const seen = `${result.response.headers.get('www-authenticate')} ${await result.response.text()}`
    assert.doesNotMatch(seen, /Auth0|audience parameter/, 'the client gets the public text only')
  })

  it('an audience mismatch: the log shows the token audience and names OAUTH_AUDIENCE', async () => {
    const { logger, warnings } = capture()
    const guard = await guardFromEnv({ OAUTH_ISSUER_URL: plainJwt.issuer }, logger)
    const token = await plainJwt.issueToken({ resource: API })
    await expectCheck(guard, bearerRequest(RESOURCE, token), 'audience_mismatch')
    assert.match(
      warnings.join('\n'),
      /audience_mismatch.*token aud .*https:\/\/api\.example\.com.*add it to OAUTH_AUDIENCE/,
    )
  })

  it('with no logger given, each refusal goes to console.warn with its code and detail', async (t) => {
    const warn = t.mock.method(console, 'warn', () => {})
    const guard = await guardFromEnv({ OAUTH_ISSUER_URL: plainJwt.issuer })
    await expectCheck(
      guard,
      bearerRequest(RESOURCE, await plainJwt.issueToken({ resource: API })),
      'audience_mismatch',
    )
    const logged = warn.mock.calls.map((call) => JSON.stringify(call.arguments))
    assert.ok(
      logged.some((line) => /request refused.*audience_mismatch.*token aud/.test(line)),
      logged.join('\n'),
    )
  })
})
