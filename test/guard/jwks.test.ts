import assert from 'node:assert/strict'
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { SignJWT } from 'jose'
import { createGuard, type GuardOptions, RemoteKeySet } from '../../src/guard/index.ts'
import { type JwksServer, type ScriptedReply, startJwksServer } from '../support/jwks-server.ts'

const RESOURCE = 'https://mcp.example.com/mcp'
// Never contacted: the tests give the guard its jwksUri, so discovery does not run.
const ISSUER = 'https://idp.example.com'
const COOLDOWN_MS = 30_000
const MAX_AGE_MS = 600_000

interface SigningKey {
  kid: string
  privateKey: KeyObject
  jwk: Record<string, unknown>
}

function newKey(kid: string = randomUUID()): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' } }
}

function sign(key: SigningKey, kid = key.kid): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({
    iss: ISSUER,
    aud: RESOURCE,
    sub: 'user-1',
    client_id: 'client-1',
    iat: now,
    exp: now + 3600,
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
    .sign(key.privateKey)
}

const bearer = (token: string) => new Request(RESOURCE, { headers: { authorization: `Bearer ${token}` } })

function recordingLogger() {
  const warnings: string[] = []
  return { warnings, logger: { warn: (message: string) => warnings.push(message), info: () => {} } }
}

function guardFor(jwks: JwksServer, options: Partial<GuardOptions> = {}) {
  return createGuard({
    resource: RESOURCE,
    authorizationServers: [{ issuer: ISSUER, jwksUri: jwks.url }],
    logger: recordingLogger().logger,
    ...options,
  })
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    return (error as { code?: string }).code ?? String(error)
  }
  return 'resolved'
}

describe('RemoteKeySet: unknown kid', () => {
  let jwks: JwksServer
  const key = newKey()
  before(async () => {
    jwks = await startJwksServer([key.jwk])
  })
  after(() => jwks.close())

  test('refetches once for an unknown kid, then answers key_not_found naming the kid and URL', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
    const keys = new RemoteKeySet(new URL(jwks.url))
    await keys.load()
    t.mock.timers.tick(COOLDOWN_MS)
    const before = jwks.fetches
    await assert.rejects(keys.keyFor('no-such-kid', 'ES256'), (error: Error & { code: string }) => {
      assert.equal(error.code, 'key_not_found')
      assert.match(error.message, /kid "no-such-kid"/)
      assert.ok(error.message.includes(jwks.url))
      return true
    })
    assert.equal(jwks.fetches - before, 1)
    // Inside the cooldown that refetch opened, a second unknown kid costs nothing.
    assert.equal(await codeOf(keys.keyFor('another-unknown', 'ES256')), 'key_not_found')
    assert.equal(jwks.fetches - before, 1)
  })

  test('1000 concurrent unknown kids make one fetch per cooldown window', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
    // The delay keeps the fetch in flight while the whole burst arrives.
    jwks.reply({ body: { keys: [key.jwk] }, delayMs: 50 })
    t.after(() => jwks.publish([key.jwk]))
    const keys = new RemoteKeySet(new URL(jwks.url))
    await keys.load()
    const burst = async () => {
      const codes = await Promise.all(
        Array.from({ length: 1000 }, () => codeOf(keys.keyFor(randomUUID(), 'ES256'))),
      )
      assert.deepEqual(new Set(codes), new Set(['key_not_found']))
    }
    assert.equal(keys.fetches, 1)
    await burst()
    assert.equal(keys.fetches, 1, 'the load opened a cooldown window')
    t.mock.timers.tick(COOLDOWN_MS)
    await burst()
    assert.equal(keys.fetches, 2)
    await burst()
    assert.equal(keys.fetches, 2)
    t.mock.timers.tick(COOLDOWN_MS)
    await burst()
    assert.equal(keys.fetches, 3)
  })

  test('through the guard, a burst of tokens with made-up kids makes at most one fetch', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
    const guard = await guardFor(jwks)
    const tokens = await Promise.all(Array.from({ length: 1000 }, () => sign(key, randomUUID())))
    t.mock.timers.tick(COOLDOWN_MS)
    const fetchesBefore = jwks.fetches
    const results = await Promise.all(tokens.map((token) => guard.check(bearer(token))))
    assert.deepEqual(new Set(results.map((r) => (r.ok ? 'ok' : r.error.code))), new Set(['key_not_found']))
    assert.equal(jwks.fetches - fetchesBefore, 1)
  })
})

describe('guard: key rotation', () => {
  test('a newly published kid is accepted on its first request, after one refetch', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
    const [current, next] = [newKey(), newKey()]
    const jwks = await startJwksServer([current.jwk])
    t.after(() => jwks.close())
    const guard = await guardFor(jwks)
    assert.equal((await guard.check(bearer(await sign(current)))).ok, true)

    t.mock.timers.tick(COOLDOWN_MS)
    jwks.publish([current.jwk, next.jwk])
    const result = await guard.check(bearer(await sign(next)))
    assert.equal(result.ok, true, result.ok ? '' : result.error.message)
    assert.equal(jwks.fetches, 2)
    assert.equal((await guard.check(bearer(await sign(current)))).ok, true)
  })

  test('a key removed from the JWKS stops verifying once the cache is past its max age', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
    const [removed, kept] = [newKey(), newKey()]
    const jwks = await startJwksServer([removed.jwk, kept.jwk])
    t.after(() => jwks.close())
    const guard = await guardFor(jwks, { cacheSeconds: 0 })
    const token = await sign(removed)
    assert.equal((await guard.check(bearer(token))).ok, true)

    jwks.publish([kept.jwk])
    t.mock.timers.tick(MAX_AGE_MS + 1)
    // Stale keys keep serving while the refresh runs in the background...
    assert.equal((await guard.check(bearer(token))).ok, true)
    // ...and an unknown kid waits for that refresh in flight, so after it the new set is in place.
    assert.equal(await codeOf(guard.authenticate(bearer(await sign(kept, 'unknown')))), 'key_not_found')
    assert.equal(jwks.fetches, 2)
    assert.equal(await codeOf(guard.authenticate(bearer(token))), 'key_not_found')
    assert.equal((await guard.check(bearer(await sign(kept)))).ok, true)
  })
})

describe('guard: provider down after start', () => {
  const outages = [
    { name: 'server gone', reason: 'connection refused', cut: (jwks: JwksServer) => jwks.close() },
    { name: 'HTTP 500', reason: 'answered HTTP 500', cut: (jwks: JwksServer) => jwks.reply({ status: 500 }) },
  ]
  for (const outage of outages) {
    test(`${outage.name}: the keys already loaded keep working, and a warning is logged`, async (t) => {
      t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
      const key = newKey()
      const jwks = await startJwksServer([key.jwk])
      t.after(() => jwks.close())
      const { warnings, logger } = recordingLogger()
      const guard = await guardFor(jwks, { logger, cacheSeconds: 0 })
      await outage.cut(jwks)

      t.mock.timers.tick(MAX_AGE_MS + 1)
      // An unknown kid forces a refetch now and waits for it.
      assert.equal(await codeOf(guard.authenticate(bearer(await sign(key, 'unknown')))), 'key_not_found')
      const result = await guard.check(bearer(await sign(key)))
      assert.equal(result.ok, true, result.ok ? '' : result.error.message)
      assert.ok(
        warnings.some(
          (w) =>
            w.includes(jwks.url) &&
            w.includes(outage.reason) &&
            w.includes('keeping the keys fetched before'),
        ),
        `warnings: ${JSON.stringify(warnings)}`,
      )
    })
  }
})

test('a provider that stays down is asked at most once per cooldown window, even with stale keys', async (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
  const key = newKey()
  const jwks = await startJwksServer([key.jwk])
  t.after(() => jwks.close())
  const guard = await guardFor(jwks, { cacheSeconds: 0 })
  jwks.reply({ status: 500 })
  t.mock.timers.tick(MAX_AGE_MS + 1)
  for (let i = 0; i < 10; i++) {
    const result = await guard.check(bearer(await sign(key)))
    assert.equal(result.ok, true)
  }
  assert.equal(jwks.fetches, 2)
})

describe('createGuard: JWKS faults at start', () => {
  const oversized = { keys: [], padding: 'x'.repeat(4096) }
  const faults: { name: string; reply: ScriptedReply; reason: string; timeoutMs?: number }[] = [
    { name: 'timeout', reply: { delayMs: 5000 }, timeoutMs: 200, reason: 'no answer within 200 ms' },
    { name: 'HTTP 503', reply: { status: 503 }, reason: 'answered HTTP 503' },
    { name: 'invalid JSON', reply: { body: '{"keys": [' }, reason: 'answered with a body that is not JSON' },
    { name: 'JSON array', reply: { body: [] }, reason: 'answered with JSON that is not an object' },
    {
      name: 'no keys array',
      reply: { body: { keys: {} } },
      reason: 'answered with a document that has no "keys" array',
    },
    {
      name: 'body over the cap (declared length)',
      reply: { body: oversized },
      reason: 'over the 1024-byte limit',
    },
    {
      name: 'body over the cap (chunked)',
      reply: { body: oversized, headers: { 'transfer-encoding': 'chunked' } },
      reason: 'answered with more than 1024 bytes',
    },
    {
      name: 'redirect to another host',
      reply: { status: 302, headers: { location: 'https://evil.example/jwks' } },
      reason: 'answered 302 redirect to https://evil.example/jwks, which is not followed',
    },
  ]
  for (const fault of faults) {
    test(`${fault.name}: refuses to start with authorization_server_unavailable naming the URL`, async (t) => {
      const jwks = await startJwksServer()
      t.after(() => jwks.close())
      jwks.reply(fault.reply)
      await assert.rejects(
        // Only the timeout case waits for its short deadline: the others must not depend on a loaded machine's speed.
        guardFor(jwks, { timeoutMs: fault.timeoutMs ?? 5000, jwks: { maxBytes: 1024 } }),
        (error: Error & { code: string }) => {
          assert.equal(error.code, 'authorization_server_unavailable')
          assert.ok(error.message.includes(`JWKS ${jwks.url} could not be loaded`), error.message)
          assert.ok(error.message.includes(fault.reason), error.message)
          return true
        },
      )
    })
  }

  test('a plain-http jwks_uri off loopback: refuses to start with config_invalid naming the URL', async () => {
    const jwksUri = 'http://keys.example.com/jwks'
    await assert.rejects(
      createGuard({ resource: RESOURCE, authorizationServers: [{ issuer: ISSUER, jwksUri }] }),
      (error: Error & { code: string }) => {
        assert.equal(error.code, 'config_invalid')
        assert.ok(error.message.includes(jwksUri), error.message)
        assert.match(error.message, /must use https/)
        return true
      },
    )
  })
})

// Keys from Project Wycheproof, testvectors_v1/json_web_key_test.json (C2SP/wycheproof), Apache-2.0:
// copied with its licence to test/vectors/wycheproof/.
const wycheproof = JSON.parse(
  readFileSync(new URL('../vectors/wycheproof/json_web_key_test.json', import.meta.url), 'utf8'),
) as { testGroups: { public?: { keys: object[] }; private: { keys: object[] }; tests: { tcId: number }[] }[] }

function wycheproofKey(tcId: number, which: 'public' | 'private' = 'public'): Record<string, unknown> {
  const group = wycheproof.testGroups.find((g) => g.tests.some((t) => t.tcId === tcId))
  const key = group?.[which]?.keys[0]
  assert.ok(key, `Wycheproof tcId ${tcId} has a ${which} key`)
  return key as Record<string, unknown>
}

describe('RemoteKeySet: unusable keys are skipped with a warning', () => {
  const good = newKey('good')
  const ecPublic = { ...newKey().jwk }
  const duplicate = [newKey('twin').jwk, newKey('twin').jwk]
  const cases = [
    {
      name: 'RSA 1024-bit modulus (Wycheproof tcId 8)',
      keys: [wycheproofKey(8)],
      alg: 'RS256',
      warning: /key #1 skipped: RSA modulus of 1024 bits is under 2048/,
    },
    {
      name: 'RSA e=1 (Wycheproof tcId 9)',
      keys: [wycheproofKey(9)],
      alg: 'RS256',
      warning: /key #1 skipped: RSA exponent 1 is not an odd number of at least 3/,
    },
    {
      name: 'RSA modulus with the ROCA fingerprint (Wycheproof tcId 7)',
      keys: [wycheproofKey(7)],
      alg: 'RS256',
      warning: /key #1 skipped: RSA modulus has the ROCA fingerprint/,
    },
    {
      name: "private member 'd' (Wycheproof tcId 5)",
      keys: [wycheproofKey(5, 'private')],
      alg: 'RS256',
      warning: /key #1 skipped: contains private member "d"/,
    },
    {
      name: 'oct key (Wycheproof tcId 1, MixedKeySet)',
      keys: [wycheproofKey(1, 'private')],
      alg: 'ES256',
      warning: /key #1 skipped: unsupported kty "oct"/,
    },
    {
      name: "RSA use:'enc' (Wycheproof tcId 6)",
      keys: [wycheproofKey(6)],
      alg: 'RS256',
      warning: /key #1 skipped: use is "enc", not "sig"/,
    },
    {
      name: "EC use:'enc' (Wycheproof tcId 21)",
      keys: [wycheproofKey(21)],
      alg: 'ES256',
      warning: /key #1 skipped: use is "enc", not "sig"/,
    },
    {
      name: 'key_ops without verify',
      keys: [{ ...ecPublic, kid: 'ops', key_ops: ['encrypt'] }],
      alg: 'ES256',
      warning: /key #1 skipped: key_ops does not include "verify"/,
    },
    {
      name: 'alg ES521 (Wycheproof tcId 19)',
      keys: [wycheproofKey(19)],
      alg: 'ES256',
      warning: /key #1 skipped: unsupported alg "ES521"/,
    },
    {
      name: 'alg ES256 on a P-384 key (Wycheproof tcId 23)',
      keys: [wycheproofKey(23)],
      alg: 'ES256',
      warning: /key #1 skipped: alg ES256 does not fit a EC P-384 key/,
    },
    {
      name: 'alg ES256 on an RSA key (Wycheproof tcId 24)',
      keys: [wycheproofKey(24)],
      alg: 'ES256',
      warning: /key #1 skipped: alg ES256 does not fit a RSA P-256 key/,
    },
    {
      name: 'alg RS256 on an EC key',
      keys: [{ ...ecPublic, kid: 'mismatch', alg: 'RS256' }],
      alg: 'RS256',
      warning: /key #1 skipped: alg RS256 does not fit a EC P-256 key/,
    },
    {
      name: 'point off the curve (Wycheproof tcId 22)',
      keys: [wycheproofKey(22)],
      alg: 'ES256',
      warning: /key #1 skipped: cannot be imported/,
    },
    {
      name: 'duplicate kid: neither is used',
      keys: duplicate,
      alg: 'ES256',
      warning: /kid "twin" appears more than once; none of them is used/,
    },
  ] as const

  let jwks: JwksServer
  before(async () => {
    jwks = await startJwksServer()
  })
  after(() => jwks.close())

  for (const c of cases) {
    test(c.name, async () => {
      jwks.publish([good.jwk, ...c.keys])
      const warnings: string[] = []
      const keys = new RemoteKeySet(new URL(jwks.url), { onWarning: (w) => warnings.push(w) })
      await keys.load()
      const kid = (c.keys[0] as { kid: string }).kid
      assert.equal(await codeOf(keys.keyFor(kid, c.alg)), 'key_not_found')
      assert.ok(
        warnings.some((w) => c.warning.test(w) && w.includes(jwks.url)),
        JSON.stringify(warnings),
      )
      // The sound key next to it is still used.
      assert.equal((await keys.keyFor('good', 'ES256')).kid, 'good')
    })
  }

  test('through the guard: a token signed by a duplicated kid is refused and the skip is logged', async (t) => {
    const twins = [newKey('twin'), newKey('twin')] as const
    const server = await startJwksServer(twins.map((k) => k.jwk))
    t.after(() => server.close())
    const { warnings, logger } = recordingLogger()
    const guard = await guardFor(server, { logger })
    for (const twin of twins) {
      const result = await guard.check(bearer(await sign(twin)))
      assert.equal(result.ok ? 'ok' : result.error.code, 'key_not_found')
    }
    assert.ok(
      warnings.some((w) => w.includes('kid "twin" appears more than once')),
      JSON.stringify(warnings),
    )
  })
})

describe('in-process key source (an authorization server beside the guard)', () => {
  test('keys come from the source, with no discovery or HTTP, and get the same checks', async () => {
    const good = newKey()
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' })
    let reads = 0
    const warnings: string[] = []
    const guard = await createGuard({
      resource: RESOURCE,
      authorizationServers: [
        {
          issuer: ISSUER,
          jwks: async () => {
            reads++
            return { keys: [good.jwk, { ...weak, kid: 'weak' }] }
          },
        },
      ],
      logger: { warn: (m) => warnings.push(m), info: () => {} },
    })
    assert.equal((await guard.verifyToken(await sign(good))).issuer, ISSUER)
    assert.equal(reads, 1)
    assert.ok(
      warnings.some((w) => w.includes('RSA modulus of 1024 bits')),
      warnings.join('\n'),
    )
  })

  test('a source that fails at start stops createGuard with authorization_server_unavailable', async () => {
    await assert.rejects(
      createGuard({
        resource: RESOURCE,
        authorizationServers: [{ issuer: ISSUER, jwks: () => Promise.reject(new Error('store closed')) }],
      }),
      (error: Error & { code?: string }) =>
        error.code === 'authorization_server_unavailable' && error.message.includes('store closed'),
    )
  })
})
