/**
 * Public JOSE test vectors against the guard's signature layer: decodeCompactJws -> importVerificationKey ->
 * keyFitsAlgorithm + verifySignature, composed as verify_jwt.ts composes them, without the JWT claim checks.
 *
 * Data (copied unchanged with their licences into test/vectors/, see its README):
 * - Project Wycheproof, C2SP/wycheproof testvectors_v1 (commit dac1dd4): json_web_signature_test.json and
 *   json_web_key_test.json. Copyright Google LLC and the Wycheproof authors, Apache License 2.0
 *   (wycheproof/LICENSE next to the data).
 * - The RFC 7520 examples, ietf-jose/cookbook (commit 13692b6): jws/, curve25519/jws.json, rfc7797/.
 *   Unlicense (public domain).
 *
 * Where the guard deliberately disagrees with a label, the vector is listed in an exceptions table below with
 * the outcome the guard must produce instead and the reason; every other disagreement fails.
 */
import assert from 'node:assert/strict'
import { createPublicKey, type JsonWebKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { GuardError, type GuardErrorCode } from '../../src/guard/errors.ts'
import { RemoteKeySet } from '../../src/guard/jwks.ts'
import {
  isJwsAlgorithm,
  JWS_ALGORITHMS,
  type JwsAlgorithm,
  keyFitsAlgorithm,
  verifySignature,
} from '../../src/guard/lib/algorithms.ts'
import { type DecodedJws, decodeCompactJws } from '../../src/guard/lib/compact.ts'
import { importVerificationKey, type VerificationKey } from '../../src/guard/lib/jwk.ts'

const TEST_DATA = new URL('../vectors/', import.meta.url)
const readJson = (path: string): unknown => JSON.parse(readFileSync(new URL(path, TEST_DATA), 'utf8'))

/** The guard's default `maxTokenBytes`. */
const MAX_TOKEN_BYTES = 8192
const EVERY_GUARD_ALGORITHM: ReadonlySet<JwsAlgorithm> = new Set(
  Object.keys(JWS_ALGORITHMS).filter(isJwsAlgorithm),
)
/** The codes this layer may refuse with; anything else (or a thrown TypeError) is a bug. */
const JWS_LAYER_CODES = new Set<string>([
  'token_too_large',
  'token_malformed',
  'algorithm_not_allowed',
  'key_not_found',
  'signature_invalid',
])

type Outcome = { code: 'verified' } | { code: GuardErrorCode; detail: string }
type Label = 'valid' | 'invalid' | 'acceptable'

// ---------------------------------------------------------------------------------------------------------
// The layer under test

/**
 * decodeCompactJws parses the payload as a JWT claim set, while these vectors sign arbitrary bytes. So the
 * real decoder runs on the vector with exactly one refusal waived, "the payload is not a JSON object"; then
 * on the same header and signature segments around `{}`, for the decoded header and signature. Every other
 * check of the decoder (size, shape, canonical base64url of all three segments, JSON-object header) applies.
 */
const NOT_A_CLAIM_SET = new Set(['payload is not UTF-8 JSON', 'payload is not a JSON object'])
const EMPTY_CLAIM_SET = Buffer.from('{}').toString('base64url')

function decodeSignedBytes(jws: string): DecodedJws {
  try {
    return decodeCompactJws(jws, MAX_TOKEN_BYTES)
  } catch (error) {
    if (!(error instanceof GuardError && NOT_A_CLAIM_SET.has(error.detail))) throw error
  }
  const [header = '', payload = '', signature = ''] = jws.split('.')
  const decoded = decodeCompactJws(`${header}.${EMPTY_CLAIM_SET}.${signature}`, MAX_TOKEN_BYTES)
  return { ...decoded, signingInput: Buffer.from(`${header}.${payload}`, 'ascii') }
}

/** The JWS-layer header checks of verify_jwt.ts (checkHeader and the kid type), in the same order. */
function checkJwsHeader(
  header: Record<string, unknown>,
  allowedAlgs: ReadonlySet<JwsAlgorithm>,
): { alg: JwsAlgorithm; kid: string | undefined } {
  const { alg, kid } = header
  if (typeof alg !== 'string') throw new GuardError('token_malformed', 'the header has no "alg"')
  if (!isJwsAlgorithm(alg) || !allowedAlgs.has(alg)) throw new GuardError('algorithm_not_allowed', alg)
  if (header.crit !== undefined) throw new GuardError('token_malformed', '"crit"')
  if (header.b64 !== undefined) throw new GuardError('token_malformed', '"b64"')
  if (header.zip !== undefined) throw new GuardError('token_malformed', '"zip"')
  if (kid !== undefined && typeof kid !== 'string') throw new GuardError('token_malformed', '"kid"')
  return { alg, kid }
}

type KeyLookup = (kid: string | undefined, alg: JwsAlgorithm) => Promise<VerificationKey>

async function verifyWith(
  jws: string,
  allowedAlgs: ReadonlySet<JwsAlgorithm>,
  keyFor: KeyLookup,
): Promise<Outcome> {
  try {
    const { header, signingInput, signature } = decodeSignedBytes(jws)
    const { alg, kid } = checkJwsHeader(header, allowedAlgs)
    const key = await keyFor(kid, alg)
    if (!verifySignature(alg, key.key, signingInput, signature)) throw new GuardError('signature_invalid')
    return { code: 'verified' }
  } catch (error) {
    if (error instanceof GuardError) return { code: error.code, detail: error.detail }
    throw error
  }
}

/** One JWK, selected as RemoteKeySet selects from a one-key set: kid, key type and curve, the key's own alg. */
function verifyCompact(jws: string, jwk: unknown, allowedAlgs: ReadonlySet<JwsAlgorithm>): Promise<Outcome> {
  return verifyWith(jws, allowedAlgs, async (kid, alg) => {
    const key = importVerificationKey(jwk)
    if ('rejected' in key) throw new GuardError('key_not_found', key.rejected)
    const selectable =
      (kid === undefined || key.kid === kid) &&
      keyFitsAlgorithm(alg, key.kty, key.crv) &&
      (key.alg === undefined || key.alg === alg)
    if (!selectable) throw new GuardError('key_not_found', `key does not match kid or ${alg}`)
    return key
  })
}

// ---------------------------------------------------------------------------------------------------------
// Vectors and exceptions

interface Vector {
  tcId: number
  comment: string
  jws: string
  result: Label
  flags: string[]
}

interface Group {
  comment: string
  public?: unknown
  private?: unknown
  tests: Vector[]
}

interface Exception {
  /** What the guard does instead of what the label says. */
  code: Outcome['code']
  reason: string
}

const SYMMETRIC =
  'HS*: the guard verifies asymmetric algorithms only (lib/algorithms.ts), so every HMAC token is refused'
/** Vectors of json_web_signature_test.json whose label the guard deliberately does not follow. */
const SIGNATURE_EXCEPTIONS = exceptionTable([
  [[1, 348, 352, 358, 359, 376, 377], 'algorithm_not_allowed', `labelled valid; ${SYMMETRIC}`],
  [
    [357],
    'algorithm_not_allowed',
    `labelled valid, byte-identical to 367 and 370 labelled invalid (C2SP/wycheproof#236); ${SYMMETRIC}`,
  ],
  [
    [372, 373],
    'token_malformed',
    "labelled valid although a '?' is inserted in a segment; '?' is not base64url, the decoder refuses it",
  ],
  [
    [259, 264, 268, 272, 320, 325],
    'token_malformed',
    'empty payload, labelled valid: a JWT payload is a non-empty JSON object, every segment must be non-empty',
  ],
  [
    [346, 350],
    'key_not_found',
    'rfc7520 group: the key pins alg PS256, the JWS header says PS384; a key is used only with its own alg',
  ],
  [
    [347, 351],
    'key_not_found',
    'rfc7520 group: the key pins alg "ES521", which is not a JWS algorithm, so the key is not imported',
  ],
])

/** Vectors of json_web_key_test.json whose label the guard deliberately does not follow. */
const KEY_SET_EXCEPTIONS = exceptionTable([
  [[2, 13, 14, 15], 'algorithm_not_allowed', `labelled valid; ${SYMMETRIC}`],
])

/** Invalid vectors of json_web_key_test.json whose key set the guard does not reject entirely. */
const KEY_EXCEPTIONS: ReadonlyMap<number, string> = new Map([
  [
    1,
    'mixed key set: the guard rejects key by key, not whole sets; it drops the symmetric key and keeps the ' +
      'EC key, which is sound by itself (the HS256 JWS is refused all the same)',
  ],
])

function exceptionTable(rows: [number[], Outcome['code'], string][]): ReadonlyMap<number, Exception> {
  return new Map(rows.flatMap(([tcIds, code, reason]) => tcIds.map((tcId) => [tcId, { code, reason }])))
}

/**
 * Invalid vectors that attack the signature primitive itself (PKCS #1 and PSS encodings, ECDSA r and s edge
 * cases) must get as far as verifySignature: refused earlier, for another reason, they would test nothing.
 */
const SIGNATURE_ATTACK_FLAGS = new Set(['ModifiedPadding', 'ModifiedSignature'])
const SIGNATURE_ATTACK_GROUPS = new Set(['SpecialCaseEs256'])

const attacksSignature = (vector: Vector, group: Group): boolean =>
  vector.result === 'invalid' &&
  (SIGNATURE_ATTACK_GROUPS.has(group.comment) || vector.flags.some((f) => SIGNATURE_ATTACK_FLAGS.has(f)))

/** Every mismatch between what a vector (or its exception) expects and what the guard did, as one line each. */
function disagreements(
  vector: Vector,
  group: Group,
  outcome: Outcome,
  exceptions: ReadonlyMap<number, Exception>,
): string[] {
  const name = `tcId ${vector.tcId} ${vector.comment}`
  const got = outcome.code === 'verified' ? 'verified' : `refused ${outcome.code} (${outcome.detail})`
  if (outcome.code !== 'verified' && !JWS_LAYER_CODES.has(outcome.code)) return [`${name}: ${got}`]
  const exception = exceptions.get(vector.tcId)
  if (exception) return outcome.code === exception.code ? [] : [`${name}: expected ${exception.code}, ${got}`]
  if (vector.result === 'valid' && outcome.code !== 'verified') return [`${name}: labelled valid, ${got}`]
  if (vector.result === 'invalid' && outcome.code === 'verified')
    return [`${name}: labelled invalid, verified`]
  if (attacksSignature(vector, group) && outcome.code !== 'signature_invalid')
    return [`${name}: expected signature_invalid, ${got}`]
  return []
}

/** Exceptions that name no vector, or no longer contradict their vector's label. */
function staleExceptions(groups: Group[], exceptions: ReadonlyMap<number, Exception>): number[] {
  const labels = new Map(groups.flatMap((g) => g.tests.map((t) => [t.tcId, t.result] as const)))
  const contradicted = (code: Outcome['code']): Label => (code === 'verified' ? 'invalid' : 'valid')
  return [...exceptions]
    .filter(([tcId, { code }]) => labels.get(tcId) !== contradicted(code))
    .map(([id]) => id)
}

const groupName = (group: Group, index: number): string => `group ${index} ${group.comment}`

// ---------------------------------------------------------------------------------------------------------
// Wycheproof: json_web_signature_test.json

describe('wycheproof json_web_signature_test.json', () => {
  const { testGroups } = readJson('wycheproof/json_web_signature_test.json') as { testGroups: Group[] }

  test('every exception contradicts its label', () => {
    assert.deepEqual(staleExceptions(testGroups, SIGNATURE_EXCEPTIONS), [])
  })

  for (const [index, group] of testGroups.entries()) {
    test(groupName(group, index), async () => {
      const jwk = group.public ?? group.private
      const found: string[] = []
      for (const vector of group.tests) {
        const outcome = await verifyCompact(vector.jws, jwk, EVERY_GUARD_ALGORITHM)
        found.push(...disagreements(vector, group, outcome, SIGNATURE_EXCEPTIONS))
      }
      assert.deepEqual(found, [])
    })
  }
})

// ---------------------------------------------------------------------------------------------------------
// Wycheproof: json_web_key_test.json, through the real RemoteKeySet

/**
 * What importVerificationKey must say of each key of the set, in order: 'imported' or the rejection reason.
 * The set is the group's public one when it has one, else its private one (the symmetric groups).
 */
const KEY_VERDICTS: Record<number, string[]> = {
  1: ['unsupported kty "oct"', 'imported'],
  2: ['unsupported kty "oct"', 'unsupported kty "oct"'],
  3: ['unsupported kty "oct"', 'unsupported kty "oct"'],
  4: ['unsupported kty "oct"', 'unsupported kty "oct"'],
  5: ['imported'],
  6: ['use is "enc", not "sig"'],
  7: ['RSA modulus has the ROCA fingerprint (CVE-2017-15361): its private key can be recovered'],
  8: ['RSA modulus of 1024 bits is under 2048'],
  9: ['RSA exponent 1 is not an odd number of at least 3'],
  10: ['unsupported kty "oct"'],
  11: ['unsupported kty "oct"'],
  12: ['unsupported kty "oct"'],
  13: ['unsupported kty "oct"'],
  14: ['unsupported kty "oct"'],
  15: ['unsupported kty "oct"'],
  16: ['unsupported kty "oct"'],
  17: ['unsupported kty "oct"'],
  18: ['unsupported kty "oct"'],
  19: ['unsupported alg "ES521"'],
  20: ['unsupported alg "ES224"'],
  21: ['use is "enc", not "sig"'],
  22: ['cannot be imported (Invalid JWK EC key)'],
  23: ['alg ES256 does not fit a EC P-384 key'],
  24: ['alg ES256 does not fit a RSA P-256 key'],
  25: ['unsupported kty "oct"'],
  26: ['unsupported kty "oct"'],
}

describe('wycheproof json_web_key_test.json', () => {
  const { testGroups } = readJson('wycheproof/json_web_key_test.json') as { testGroups: Group[] }
  const keySets = new Map<string, unknown>()
  let origin = ''
  const server = createServer((request, response) => {
    const body = keySets.get(request.url ?? '')
    response
      .writeHead(body ? 200 : 404, { 'content-type': 'application/json' })
      .end(JSON.stringify(body ?? {}))
  })
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  test('every exception contradicts its label', () => {
    assert.deepEqual(staleExceptions(testGroups, KEY_SET_EXCEPTIONS), [])
  })

  for (const [index, group] of testGroups.entries()) {
    const keySet = (group.public ?? group.private) as { keys: unknown[] }

    test(`${groupName(group, index)}: each key is imported or rejected as expected`, () => {
      const verdicts = keySet.keys.map((jwk) => {
        const result = importVerificationKey(jwk)
        return 'rejected' in result ? result.rejected : 'imported'
      })
      for (const vector of group.tests) {
        const name = `tcId ${vector.tcId} ${vector.comment}`
        assert.deepEqual(verdicts, KEY_VERDICTS[vector.tcId], name)
        if (vector.result !== 'invalid') continue
        const someImported = verdicts.includes('imported')
        if (KEY_EXCEPTIONS.has(vector.tcId)) assert.ok(someImported, `${name}: stale key exception`)
        else assert.ok(!someImported, `${name}: labelled invalid, yet a key of its set was imported`)
      }
    })

    test(`${groupName(group, index)}: JWS through RemoteKeySet`, async () => {
      const path = `/${index}`
      keySets.set(path, keySet)
      const keys = new RemoteKeySet(new URL(path, origin), { onWarning: () => {} })
      const found: string[] = []
      for (const vector of group.tests) {
        const outcome = await verifyWith(vector.jws, EVERY_GUARD_ALGORITHM, (kid, alg) =>
          keys.keyFor(kid, alg),
        )
        found.push(...disagreements(vector, group, outcome, KEY_SET_EXCEPTIONS))
      }
      assert.deepEqual(found, [])
    })
  }
})

// ---------------------------------------------------------------------------------------------------------
// RFC 7520 (ietf-jose/cookbook)

interface CookbookExample {
  input: { key: JsonWebKey & { kid?: string; use?: string }; alg: string }
  output: { compact: string }
}

/** The public half of a cookbook key, as an issuer would publish it in its JWKS. */
function publicJwkOf(key: CookbookExample['input']['key']): JsonWebKey {
  const publicJwk = createPublicKey({ key, format: 'jwk' }).export({ format: 'jwk' })
  return { ...publicJwk, kid: key.kid, use: key.use }
}

const everyAlgorithmBut = (alg: string): ReadonlySet<JwsAlgorithm> =>
  new Set([...EVERY_GUARD_ALGORITHM].filter((a) => a !== alg))

/*
 * Out of scope, because they exist only in the JSON serializations, which the guard does not read:
 * 4.6 (unprotected header), 4.7 (content only), 4.8 (multiple signatures), rfc7797 4.2 (b64=false, JSON).
 */
describe('RFC 7520 JWS examples', () => {
  const asymmetric = [
    ['jws/4_1.rsa_v15_signature.json', 'RS256'],
    ['jws/4_2.rsa-pss_signature.json', 'PS384'],
    ['jws/4_3.ecdsa_signature.json', 'ES512'],
    ['curve25519/jws.json', 'EdDSA'],
  ] as const

  for (const [file, alg] of asymmetric) {
    test(`${file} (${alg}) verifies with its public key when ${alg} is allowed, and only then`, async () => {
      const example = readJson(`jose-cookbook/${file}`) as CookbookExample
      assert.equal(example.input.alg, alg)
      const jwk = publicJwkOf(example.input.key)
      assert.deepEqual(await verifyCompact(example.output.compact, jwk, new Set([alg])), { code: 'verified' })
      const refused = await verifyCompact(example.output.compact, jwk, everyAlgorithmBut(alg))
      assert.equal(refused.code, 'algorithm_not_allowed')
    })
  }

  const refused = [
    ['jws/4_4.hmac-sha2_integrity_protection.json', 'algorithm_not_allowed', 'HS256 is never accepted'],
    ['jws/4_5.signature_with_detached_content.json', 'token_malformed', 'detached content: empty payload'],
    ['rfc7797/hmac-sha2_b64_false.json', 'token_malformed', 'b64=false: the payload is not base64url'],
  ] as const

  for (const [file, code, why] of refused) {
    test(`${file} is refused with ${code} (${why})`, async () => {
      const example = readJson(`jose-cookbook/${file}`) as CookbookExample
      const outcome = await verifyCompact(example.output.compact, example.input.key, EVERY_GUARD_ALGORITHM)
      assert.equal(outcome.code, code)
    })
  }
})
