import assert from 'node:assert/strict'
import { createHash, generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { calculateJwkThumbprint, decodeJwt, type JWK, SignJWT } from 'jose'
import { createGuard, GUARD_ERRORS, type Guard, type GuardErrorCode } from '../../src/guard/index.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

const RESOURCE = 'https://mcp.example.com/mcp'
const RESOURCE_METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp'
const quietLogger = { warn: () => {}, info: () => {} }

interface ProofKey {
  privateKey: KeyObject
  jwk: JWK
  alg: string
}

function proofKey(curve: 'P-256' | 'P-384' = 'P-256'): ProofKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve })
  return {
    privateKey,
    jwk: publicKey.export({ format: 'jwk' }) as JWK,
    alg: curve === 'P-256' ? 'ES256' : 'ES384',
  }
}

const now = () => Math.floor(Date.now() / 1000)
const hashOf = (token: string) => createHash('sha256').update(token).digest('base64url')

/** A DPoP proof (RFC 9449 §4.2); `claims` and `header` override the defaults, `undefined` removes a claim. */
function proof(
  key: ProofKey,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
  signer: KeyObject = key.privateKey,
): Promise<string> {
  return new SignJWT({ jti: randomUUID(), iat: now(), ...claims })
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.jwk, ...header })
    .sign(signer)
}

/** A proof for a POST to the resource with `token`. */
const resourceProof = (key: ProofKey, token: string, claims = {}, header = {}, signer?: KeyObject) =>
  proof(key, { htm: 'POST', htu: RESOURCE, ath: hashOf(token), ...claims }, header, signer)

function post(token: string, scheme: 'DPoP' | 'Bearer', dpop?: string | string[]): Request {
  const headers = new Headers({ authorization: `${scheme} ${token}` })
  for (const value of [dpop ?? []].flat()) headers.append('dpop', value)
  return new Request(RESOURCE, { method: 'POST', headers })
}

/** A client-credentials token bound to `key`, from oidc-provider's token endpoint with a DPoP proof. */
async function boundToken(idp: TestIdp, key: ProofKey): Promise<string> {
  const tokenEndpoint = `${idp.issuer}/token`
  const response = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from('test-client:test-client-secret').toString('base64')}`,
      dpop: await proof(key, { htm: 'POST', htu: tokenEndpoint }),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: RESOURCE }),
  })
  const json = (await response.json()) as { access_token?: string; token_type?: string }
  assert.equal(response.status, 200, JSON.stringify(json))
  assert.equal(json.token_type, 'DPoP')
  return json.access_token as string
}

/** Several causes share a code, so the detail (for logs, never the wire) shows which check refused. */
function assertRefused(
  result: Awaited<ReturnType<Guard['check']>>,
  code: GuardErrorCode,
  detail: RegExp,
): void {
  assert.equal(result.ok ? 'ok' : result.error.code, code)
  assert.ok(!result.ok)
  assert.match(result.error.detail, detail)
  assert.equal(result.response.status, 401)
  // RFC 9449 §7.1: a DPoP failure is answered with a DPoP challenge that lists the accepted algorithms.
  const { error, description } = GUARD_ERRORS[code]
  assert.equal(
    result.response.headers.get('www-authenticate'),
    `DPoP error="${error}", error_description="${description}", resource_metadata="${RESOURCE_METADATA}", algs="ES256 EdDSA PS256 RS256"`,
  )
}

let idp: TestIdp
let guard: Guard
const key = proofKey()
let token: string

before(async () => {
  idp = await startTestIdp({ resources: { [RESOURCE]: 'tools:read' } })
  guard = await createGuard({
    resource: RESOURCE,
    authorizationServers: [{ issuer: idp.issuer }],
    logger: quietLogger,
  })
  token = await boundToken(idp, key)
})
after(() => idp.close())

describe('DPoP-bound tokens from oidc-provider', () => {
  test('the token carries cnf.jkt, the thumbprint of the proof key', async () => {
    assert.deepEqual(decodeJwt(token).cnf, { jkt: await calculateJwkThumbprint(key.jwk) })
  })

  test('a valid proof with the DPoP scheme is accepted', async () => {
    const result = await guard.check(post(token, 'DPoP', await resourceProof(key, token)))
    assert.ok(result.ok, result.ok ? '' : result.error.message)
    assert.equal(result.token.dpopJkt, await calculateJwkThumbprint(key.jwk))
  })

  test('htu is compared without its query', async () => {
    const result = await guard.check(
      post(token, 'DPoP', await resourceProof(key, token, { htu: `${RESOURCE}?a=1` })),
    )
    assert.equal(result.ok, true, result.ok ? '' : result.error.message)
  })

  test('the bound token sent as Bearer: dpop_binding_mismatch', async () => {
    assertRefused(
      await guard.check(post(token, 'Bearer', await resourceProof(key, token))),
      'dpop_binding_mismatch',
      /sent as a Bearer token/,
    )
  })

  test('no DPoP header: dpop_proof_invalid', async () => {
    assertRefused(await guard.check(post(token, 'DPoP')), 'dpop_proof_invalid', /exactly one DPoP header/)
  })

  test('two DPoP headers: dpop_proof_invalid', async () => {
    const proofs = [await resourceProof(key, token), await resourceProof(key, token)]
    assertRefused(
      await guard.check(post(token, 'DPoP', proofs)),
      'dpop_proof_invalid',
      /exactly one DPoP header/,
    )
  })

  test('a replayed proof: the first use passes, the second is dpop_proof_invalid', async () => {
    const once = await resourceProof(key, token)
    assert.equal((await guard.check(post(token, 'DPoP', once))).ok, true)
    assertRefused(await guard.check(post(token, 'DPoP', once)), 'dpop_proof_invalid', /already used/)
  })

  test('a full replay cache refuses new proofs (503) and never forgets a remembered one', async () => {
    const small = await createGuard({
      resource: RESOURCE,
      authorizationServers: [{ issuer: idp.issuer }],
      dpop: { replayCacheMaxEntries: 2 },
      logger: quietLogger,
    })
    const captured = await resourceProof(key, token)
    assert.equal((await small.check(post(token, 'DPoP', captured))).ok, true)
    assert.equal((await small.check(post(token, 'DPoP', await resourceProof(key, token)))).ok, true)
    for (let i = 0; i < 3; i += 1) {
      const flooded = await small.check(post(token, 'DPoP', await resourceProof(key, token)))
      assert.equal(flooded.ok ? 'ok' : flooded.error.code, 'dpop_replay_cache_full')
      assert.ok(!flooded.ok)
      assert.equal(flooded.response.status, 503)
      assert.equal(flooded.response.headers.get('retry-after'), '5')
      assert.match(
        flooded.error.detail,
        /no room for another unexpired proof; raise dpop.replayCacheMaxEntries/,
      )
    }
    assertRefused(await small.check(post(token, 'DPoP', captured)), 'dpop_proof_invalid', /already used/)
  })

  test('a replay store shared by two guards (several instances): a proof used on one is refused on the other', async () => {
    const seen = new Map<string, number>()
    const replayStore = {
      add: async (proofKey: string, expiresAt: number, at: number) => {
        if ((seen.get(proofKey) ?? 0) > at) return 'seen' as const
        seen.set(proofKey, expiresAt)
        return 'added' as const
      },
    }
    const instance = () =>
      createGuard({
        resource: RESOURCE,
        authorizationServers: [{ issuer: idp.issuer }],
        dpop: { replayStore },
        logger: quietLogger,
      })
    const [first, second] = [await instance(), await instance()]
    const once = await resourceProof(key, token)
    assert.equal((await first.check(post(token, 'DPoP', once))).ok, true)
    assertRefused(await second.check(post(token, 'DPoP', once)), 'dpop_proof_invalid', /already used/)
    assert.equal(seen.size, 1)
  })

  test('a replay store that fails refuses the proof with 503 dpop_replay_unavailable (fail closed)', async () => {
    const down = await createGuard({
      resource: RESOURCE,
      authorizationServers: [{ issuer: idp.issuer }],
      dpop: {
        replayStore: {
          add: async () => {
            throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
          },
        },
      },
      logger: quietLogger,
    })
    const result = await down.check(post(token, 'DPoP', await resourceProof(key, token)))
    assert.equal(result.ok ? 'ok' : result.error.code, 'dpop_replay_unavailable')
    assert.ok(!result.ok)
    assert.equal(result.response.status, 503)
    assert.equal(result.response.headers.get('retry-after'), '5')
    assert.match(result.error.detail, /ECONNREFUSED/)
    assert.deepEqual(await result.response.json(), {
      error: 'temporarily_unavailable',
      error_description: GUARD_ERRORS.dpop_replay_unavailable.description,
    })
  })

  test('a replay store without an add method is refused at construction', async () => {
    await assert.rejects(
      createGuard({
        resource: RESOURCE,
        authorizationServers: [{ issuer: idp.issuer }],
        dpop: { replayStore: {} as never },
        logger: quietLogger,
      }),
      { code: 'config_invalid', message: /dpop.replayStore must have an add method/ },
    )
  })

  const otherKey = proofKey()
  const p384 = proofKey('P-384')
  const cases: {
    name: string
    make: () => Promise<string>
    code: GuardErrorCode
    detail: RegExp
  }[] = [
    {
      name: 'wrong htm',
      make: () => resourceProof(key, token, { htm: 'GET' }),
      code: 'dpop_proof_invalid',
      detail: /^htm "GET" for a POST$/,
    },
    {
      name: 'wrong htu path',
      make: () => resourceProof(key, token, { htu: 'https://mcp.example.com/other' }),
      code: 'dpop_proof_invalid',
      detail: /^htu "https:\/\/mcp.example.com\/other"/,
    },
    {
      name: 'wrong htu origin',
      make: () => resourceProof(key, token, { htu: 'https://evil.example.com/mcp' }),
      code: 'dpop_proof_invalid',
      detail: /^htu "https:\/\/evil.example.com\/mcp"/,
    },
    {
      name: 'iat 10 minutes old',
      make: () => resourceProof(key, token, { iat: now() - 600 }),
      code: 'dpop_proof_invalid',
      detail: /iat missing or outside the accepted window/,
    },
    {
      name: 'iat 10 minutes ahead',
      make: () => resourceProof(key, token, { iat: now() + 600 }),
      code: 'dpop_proof_invalid',
      detail: /iat missing or outside the accepted window/,
    },
    {
      name: 'missing ath',
      make: () => resourceProof(key, token, { ath: undefined }),
      code: 'dpop_proof_invalid',
      detail: /ath does not match/,
    },
    {
      name: 'ath of another token',
      make: () => resourceProof(key, token, { ath: hashOf(`${token}x`) }),
      code: 'dpop_proof_invalid',
      detail: /ath does not match/,
    },
    {
      name: 'missing jti',
      make: () => resourceProof(key, token, { jti: undefined }),
      code: 'dpop_proof_invalid',
      detail: /jti missing/,
    },
    {
      name: 'typ JWT',
      make: () => resourceProof(key, token, {}, { typ: 'JWT' }),
      code: 'dpop_proof_invalid',
      detail: /proof rejected: .*typ/,
    },
    {
      name: 'ES384, not an accepted algorithm',
      make: () => resourceProof(p384, token),
      code: 'dpop_proof_invalid',
      detail: /proof rejected: .*alg/,
    },
    {
      name: 'private key in the jwk header',
      make: () => resourceProof(key, token, {}, { jwk: key.privateKey.export({ format: 'jwk' }) }),
      code: 'dpop_proof_invalid',
      detail: /proof rejected: .*public key/,
    },
    {
      name: 'signature by a key other than the embedded jwk',
      make: () => resourceProof(key, token, {}, {}, otherKey.privateKey),
      code: 'dpop_proof_invalid',
      detail: /proof rejected: .*signature verification failed/,
    },
    {
      name: 'valid proof by another key than the one the token is bound to',
      make: () => resourceProof(otherKey, token),
      code: 'dpop_binding_mismatch',
      detail: /proof key does not match cnf.jkt/,
    },
  ]
  for (const c of cases) {
    test(`${c.name}: ${c.code}`, async () => {
      assertRefused(await guard.check(post(token, 'DPoP', await c.make())), c.code, c.detail)
    })
  }
})

describe('unbound tokens', () => {
  test('an unbound token with the DPoP scheme: dpop_binding_mismatch', async () => {
    const unbound = await idp.issueToken()
    assertRefused(
      await guard.check(post(unbound, 'DPoP', await resourceProof(key, unbound))),
      'dpop_binding_mismatch',
      /unbound token was sent with the DPoP scheme/,
    )
  })

  test('an unbound Bearer token is accepted while DPoP is optional', async () => {
    assert.equal((await guard.check(post(await idp.issueToken(), 'Bearer'))).ok, true)
  })

  test('dpop.required refuses an unbound Bearer token, and accepts a bound one with its proof', async () => {
    const strict = await createGuard({
      resource: RESOURCE,
      authorizationServers: [{ issuer: idp.issuer }],
      dpop: { required: true },
      logger: quietLogger,
    })
    assert.equal(strict.resourceMetadata.dpop_bound_access_tokens_required, true)
    assertRefused(
      await strict.check(post(await idp.issueToken(), 'Bearer')),
      'dpop_binding_mismatch',
      /requires DPoP-bound tokens/,
    )
    const result = await strict.check(post(token, 'DPoP', await resourceProof(key, token)))
    assert.equal(result.ok, true, result.ok ? '' : result.error.message)
  })
})
