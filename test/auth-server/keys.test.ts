import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeProtectedHeader } from 'jose'
import { rotateSigningKey, signedTokenLifetimeSeconds } from '../../src/auth-server/index.ts'
import { retainWhileSigning } from '../../src/auth-server/keys.ts'
import { createGuard } from '../../src/guard/index.ts'
import { eventually } from '../support/eventually.ts'
import {
  basic,
  connect,
  type Harness,
  registerPublicClient,
  SECRET,
  startAuthServer,
  token,
} from './harness.ts'

const machineToken = async (h: Harness) => {
  const { body } = await token(
    h,
    { grant_type: 'client_credentials', resource: h.resource },
    basic('machine', 'machine-secret-machine-secret'),
  )
  return body.access_token as string
}
const kidOf = (jwt: string) =>
  JSON.parse(Buffer.from(jwt.split('.')[0] as string, 'base64url').toString()).kid

test('signing keys are generated once, stored encrypted, and reloaded on restart', async () => {
  const h = await startAuthServer()
  try {
    const [stored] = await h.store.keys.list()
    assert.equal(stored?.alg, 'ES256')
    assert.equal(stored?.state, 'active')
    assert.doesNotMatch(stored?.encryptedJwk ?? '', /"d"|"kty"/)
    const before = h.auth.signingKid
    await h.restart()
    assert.equal(h.auth.signingKid, before)
    assert.equal((await h.store.keys.list()).length, 1)
    await assert.rejects(
      h.restart({ secret: 'another-secret-another-secret-another' }),
      /cannot be decrypted/,
    )
  } finally {
    await h.close()
  }
})

test('after a rotation new tokens use the new key and old tokens still verify', async () => {
  const h = await startAuthServer({ path: '/oauth' })
  try {
    const oldToken = await machineToken(h)
    const { kid: newKid } = await rotateSigningKey(h.store, SECRET, { alg: 'EdDSA' })
    await h.restart()
    const newToken = await machineToken(h)
    assert.equal(kidOf(newToken), newKid)
    assert.notEqual(kidOf(oldToken), newKid)
    const jwks = (await (await fetch(`${h.issuer}/jwks`)).json()) as { keys: { kid: string; d?: string }[] }
    assert.deepEqual(new Set(jwks.keys.map((k) => k.kid)), new Set([newKid, kidOf(oldToken)]))
    assert.ok(jwks.keys.every((k) => k.d === undefined))
    const guard = await createGuard({
      resource: h.resource,
      authorizationServers: [{ issuer: h.issuer }],
      logger: { warn: () => {}, info: () => {} },
    })
    for (const jwt of [oldToken, newToken])
      assert.deepEqual((await guard.verifyToken(jwt)).audience, [h.resource])
  } finally {
    await h.close()
  }
})

test('invalid options are refused with a message that says what to change', async () => {
  const h = await startAuthServer()
  try {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ issuer: `${h.issuer}/` }, /ends with a slash; clients compare it byte for byte/],
      [{ issuer: `${h.issuer}?x=1` }, /no query or fragment/],
      [{ secret: 'short' }, /secret must be a string of at least 32 characters/],
      [{ resources: [] }, /resources must list at least one MCP resource/],
      [{ resources: [{ url: 'https://a.example/mcp#x', scopes: [] }] }, /without a fragment/],
      [
        {
          resources: [
            { url: 'https://a/mcp', scopes: [], default: true },
            { url: 'https://b/mcp', scopes: [], default: true },
          ],
        },
        /only one resource may be the default/,
      ],
      [{ clients: [{ client_id: 'https://c.example/doc' }] }, /must not be an https URL/],
      [{ ttl: { accessToken: 0 } }, /ttl.accessToken must be a whole number/],
    ]
    for (const [override, message] of cases) await assert.rejects(h.restart(override as never), message)
  } finally {
    await h.close()
  }
})

test('a rotation to another algorithm keeps registered clients working after the old key has left the JWKS', async () => {
  const h = await startAuthServer()
  try {
    const metadata = { client_name: 'registered before the rotation' }
    const registered = await registerPublicClient(h, metadata)
    const { kid } = await rotateSigningKey(h.store, SECRET, {
      alg: 'EdDSA',
      minimumKeepSeconds: 0,
      keepPreviousForSeconds: 0,
    })
    await h.restart()
    const jwks = (await (await fetch(`${h.issuer}/jwks`)).json()) as { keys: { kid: string }[] }
    assert.deepEqual(
      jwks.keys.map((k) => k.kid),
      [kid],
      'the ES256 key the client registered under is gone',
    )
    const tokens = await connect(h, registered)
    assert.deepEqual(decodeProtectedHeader(tokens.access_token as string), {
      alg: 'EdDSA',
      kid,
      typ: 'at+jwt',
    })
    // Identical metadata is answered from the idempotency record: that client works too.
    assert.equal(await registerPublicClient(h, metadata), registered)
  } finally {
    await h.close()
  }
})

test('the previous key stays published for the longest token lifetime, whatever keepPreviousForSeconds says', async () => {
  const h = await startAuthServer()
  try {
    const previous = h.auth.signingKid
    const started = Date.now()
    const rotation = await rotateSigningKey(h.store, SECRET, { keepPreviousForSeconds: 1 })
    assert.deepEqual(rotation.retired, [{ kid: previous, alg: 'ES256' }])
    const minimum = signedTokenLifetimeSeconds({ accessToken: 600, idToken: 600 })
    assert.equal(minimum, 660)
    const stored = (await h.store.keys.list()).find((key) => key.kid === previous)
    assert.ok((stored?.retireAfter ?? 0) >= started + minimum * 1000, JSON.stringify(stored))
    assert.equal(stored?.retireAfter, rotation.retireAfter)
  } finally {
    await h.close()
  }
})

test('a server still signing with a key another instance rotated out keeps it published', async () => {
  const h = await startAuthServer()
  try {
    const signing = h.auth.signingKid
    await rotateSigningKey(h.store, SECRET, { minimumKeepSeconds: 0, keepPreviousForSeconds: 0 })
    const stop = retainWhileSigning(h.store, signing, 600, 10)
    // Its ticks write to the store without telling anyone: wait until one has, however slow the machine.
    const stored = await eventually('the key to be retained', async () => {
      const key = (await h.store.keys.list()).find((key) => key.kid === signing)
      return (key?.retireAfter ?? 0) > Date.now() + 590_000 ? key : undefined
    }).finally(stop)
    assert.equal(stored.state, 'retired')
  } finally {
    await h.close()
  }
})

test('a rotation with a secret that cannot decrypt the stored keys changes nothing', async () => {
  const h = await startAuthServer()
  try {
    const before = await h.store.keys.list()
    await assert.rejects(
      rotateSigningKey(h.store, 'another-secret-another-secret-another'),
      /signing key .* cannot be decrypted: the secret differs/,
    )
    assert.deepEqual(await h.store.keys.list(), before)
  } finally {
    await h.close()
  }
})
