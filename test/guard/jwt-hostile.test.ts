import assert from 'node:assert/strict'
import { createPublicKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { createGuard, type Guard, type GuardErrorCode, type GuardOptions } from '../../src/guard/index.ts'
import { encodeSegment, signHmac, signJws, withTrailingBits } from '../support/forge.ts'
import { bearerRequest, expectCheck } from '../support/guard_check.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

// RS-1, RS-2 and RS-3 of security-cases.md A.2: hostile headers, keys and syntax, against real IdPs.

const RESOURCE = 'https://mcp.example.com/mcp'

let es: TestIdp
let rs: TestIdp
let jkuListener: Server
let jkuRequests = 0
let jkuUrl: string
const guards = {} as Record<'default' | 'esOnly' | 'plainJwt' | 'largeTokens' | 'otherAudiences', Guard>
/** An API identifier (Auth0's audience) and a client_id (Entra's v2 audience), accepted beside the resource. */
const API_AUDIENCE = 'https://api.example.com'
const CLIENT_ID = 'test-client'

before(async () => {
  ;[es, rs] = await Promise.all([
    startTestIdp({ resources: { [RESOURCE]: 'files:read' } }),
    startTestIdp({ resources: { [RESOURCE]: 'files:read' }, alg: 'RS256' }),
  ])
  jkuListener = createServer((_req, res) => {
    jkuRequests++
    res.end('{"keys":[]}')
  })
  await new Promise<void>((resolve) => jkuListener.listen(0, '127.0.0.1', resolve))
  jkuUrl = `http://127.0.0.1:${(jkuListener.address() as AddressInfo).port}/keys`
  const both = [{ issuer: es.issuer }, { issuer: rs.issuer }]
  const make = (options: Partial<GuardOptions>) =>
    createGuard({ resource: RESOURCE, authorizationServers: both, cacheSeconds: 0, ...options })
  ;[guards.default, guards.esOnly, guards.plainJwt, guards.largeTokens, guards.otherAudiences] =
    await Promise.all([
      make({}),
      make({ algorithms: ['ES256'] }),
      make({ authorizationServers: [{ issuer: es.issuer, acceptPlainJwt: true }] }),
      make({ maxTokenBytes: 65_536 }),
      make({ audiences: [RESOURCE, API_AUDIENCE, CLIENT_ID] }),
    ])
})

after(async () => {
  jkuListener.closeAllConnections()
  await Promise.all([es.close(), rs.close(), new Promise((resolve) => jkuListener.close(resolve))])
})

interface Case {
  name: string
  token: () => string
  code: GuardErrorCode | 'accepted'
  guard?: keyof typeof guards
}

function runCases(cases: Case[]): void {
  for (const c of cases) {
    it(c.name, async () => {
      await expectCheck(guards[c.guard ?? 'default'], bearerRequest(RESOURCE, c.token()), c.code)
    })
  }
}

function claimsFor(idp: TestIdp, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return {
    iss: idp.issuer,
    aud: RESOURCE,
    sub: 'user-1',
    client_id: 'test-client',
    iat: now,
    exp: now + 300,
    jti: randomUUID(),
    scope: 'files:read',
    ...extra,
  }
}

/** A token signed with the IdP's real key, with header members added, replaced or (as `undefined`) removed. */
function forge(idp: TestIdp, header: Record<string, unknown> = {}, claims: Record<string, unknown> = {}) {
  const alg = idp === rs ? 'RS256' : 'ES256'
  return signJws({ alg, typ: 'at+jwt', kid: idp.kid, ...header }, claimsFor(idp, claims), idp.signingKey)
}

/** The real key's signature under a header rewritten afterwards: what an attacker can do without the key. */
function withHeader(idp: TestIdp, header: Record<string, unknown>, signature?: string): string {
  const [, payload, realSignature] = forge(idp).split('.')
  return `${encodeSegment(header)}.${payload}.${signature ?? realSignature}`
}

const ALG_NONE_VARIANTS = ['none', 'None', 'NONE', 'nOnE']
const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const

describe('RS-1 algorithm and key handling', () => {
  const hmacSecrets: [string, () => Buffer][] = [
    ['PEM', () => Buffer.from(createPublicKey(es.signingKey).export({ format: 'pem', type: 'spki' }))],
    ['DER', () => createPublicKey(es.signingKey).export({ format: 'der', type: 'spki' })],
    ['JWK JSON', () => Buffer.from(JSON.stringify(createPublicKey(es.signingKey).export({ format: 'jwk' })))],
    [
      'RSA n bytes',
      () => Buffer.from(createPublicKey(rs.signingKey).export({ format: 'jwk' }).n as string, 'base64url'),
    ],
  ]
  runCases([
    { name: 'control: ES256 token signed by the trusted IdP', token: () => forge(es), code: 'accepted' },
    { name: 'control: RS256 token signed by the trusted IdP', token: () => forge(rs), code: 'accepted' },
    ...ALG_NONE_VARIANTS.flatMap((alg): Case[] => [
      {
        name: `alg ${alg} with an empty signature`,
        token: () => withHeader(es, { alg, typ: 'at+jwt' }, ''),
        code: 'token_malformed',
      },
      {
        name: `alg ${alg} with the real signature kept`,
        token: () => withHeader(es, { alg, typ: 'at+jwt', kid: es.kid }),
        code: 'algorithm_not_allowed',
      },
    ]),
    ...HMAC_ALGORITHMS.flatMap((alg) =>
      hmacSecrets.map(
        ([form, secret]): Case => ({
          name: `${alg} keyed with the public key as ${form}`,
          token: () => signHmac(alg, claimsFor(form.startsWith('RSA') ? rs : es), secret()),
          code: 'algorithm_not_allowed',
        }),
      ),
    ),
    ...['RS384', 'PS512', 'ES512', 'ES256K', 'es256', 'rs256', ''].map(
      (alg): Case => ({
        name: `alg ${JSON.stringify(alg)} outside the allow-list`,
        token: () => withHeader(es, { alg, typ: 'at+jwt', kid: es.kid }),
        code: 'algorithm_not_allowed',
      }),
    ),
    {
      name: 'a genuine RS256 token when the allow-list is ES256 only',
      token: () => forge(rs),
      code: 'algorithm_not_allowed',
      guard: 'esOnly',
    },
    { name: 'alg missing', token: () => forge(es, { alg: undefined }), code: 'token_malformed' },
    { name: 'alg not a string', token: () => forge(es, { alg: ['ES256'] }), code: 'token_malformed' },
    {
      name: 'ES256 header naming the RSA key (signed with it)',
      token: () => forge(rs, { alg: 'ES256' }),
      code: 'key_not_found',
    },
    {
      name: 'RS256 header naming the P-256 key (signed with it)',
      token: () => forge(es, { alg: 'RS256' }),
      code: 'key_not_found',
    },
    {
      name: 'PS256 header naming the RSA key whose JWK pins RS256',
      token: () => forge(rs, { alg: 'PS256' }),
      code: 'key_not_found',
    },
    {
      name: 'EdDSA header naming the P-256 key',
      token: () => forge(es, { alg: 'EdDSA' }),
      code: 'key_not_found',
    },
  ])
})

/** Order of the P-256 group: r or s equal to it (or zero) must never verify. */
const P256_ORDER = Buffer.from('FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551', 'hex')

describe('RS-1 edge signatures', () => {
  /** A genuine token whose signature is replaced by `edit(signature bytes, signing input)`. */
  const resigned = (signer: 'es' | 'rs', edit: (signature: Buffer, input: Buffer) => Buffer) => () => {
    const [h, p, s] = forge(signer === 'es' ? es : rs).split('.') as [string, string, string]
    return `${h}.${p}.${edit(Buffer.from(s, 'base64url'), Buffer.from(`${h}.${p}`)).toString('base64url')}`
  }
  const edges: [string, 'es' | 'rs', (signature: Buffer, input: Buffer) => Buffer][] = [
    ['ECDSA r = s = 0 (psychic signature)', 'es', () => Buffer.alloc(64)],
    ['ECDSA r = s = n', 'es', () => Buffer.concat([P256_ORDER, P256_ORDER])],
    ['ECDSA r and s swapped', 'es', (sig) => Buffer.concat([sig.subarray(32), sig.subarray(0, 32)])],
    [
      'ECDSA signature by the real key, DER-encoded',
      'es',
      (_sig, input) => sign('sha256', input, { key: es.signingKey, dsaEncoding: 'der' }),
    ],
    ['ECDSA signature with a trailing zero byte', 'es', (sig) => Buffer.concat([sig, Buffer.alloc(1)])],
    ['ECDSA signature one byte short', 'es', (sig) => sig.subarray(1)],
    ['RSA signature with a leading zero byte', 'rs', (sig) => Buffer.concat([Buffer.alloc(1), sig])],
    ['RSA signature one byte short', 'rs', (sig) => sig.subarray(1)],
    [
      'RSA signature with its last bit flipped',
      'rs',
      (sig) => Buffer.concat([sig.subarray(0, -1), Buffer.from([(sig.at(-1) as number) ^ 1])]),
    ],
  ]
  runCases(
    edges.map(
      ([name, signer, edit]): Case => ({ name, token: resigned(signer, edit), code: 'signature_invalid' }),
    ),
  )
})

describe('RS-2 kid injection', () => {
  runCases([
    ...['../../dev/null', "' OR '1'='1", '\u0000', '%2e%2e%2f', '*', '(kid=*)'].map(
      (kid): Case => ({
        name: `kid ${JSON.stringify(kid)}`,
        token: () => forge(es, { kid }),
        code: 'key_not_found',
      }),
    ),
    {
      name: 'the real kid followed by a NUL byte and junk',
      token: () => forge(es, { kid: `${es.kid}\u0000junk` }),
      code: 'key_not_found',
    },
    {
      name: 'the real kid in upper case',
      token: () => forge(es, { kid: es.kid.toUpperCase() }),
      code: 'key_not_found',
    },
    { name: 'a 10 KB kid', token: () => forge(es, { kid: 'k'.repeat(10_240) }), code: 'token_too_large' },
    {
      name: 'a 10 KB kid under a 64 KB size limit',
      token: () => forge(es, { kid: 'k'.repeat(10_240) }),
      code: 'key_not_found',
      guard: 'largeTokens',
    },
    ...[42, { $ne: null }, [], ['a'], null, true].map(
      (kid): Case => ({
        name: `kid ${JSON.stringify(kid)} (not a string)`,
        token: () => forge(es, { kid }),
        code: 'token_malformed',
      }),
    ),
    {
      name: 'no kid, with a single key in the JWKS (no choice to make)',
      token: () => forge(es, { kid: undefined }),
      code: 'accepted',
    },
  ])
})

describe('RS-2 crit', () => {
  runCases([
    {
      name: 'crit lists an unknown extension',
      token: () => forge(es, { crit: ['x-ext'], 'x-ext': 1 }),
      code: 'token_malformed',
    },
    { name: 'crit is empty', token: () => forge(es, { crit: [] }), code: 'token_malformed' },
    { name: 'crit lists alg', token: () => forge(es, { crit: ['alg'] }), code: 'token_malformed' },
    {
      name: 'crit lists an absent extension',
      token: () => forge(es, { crit: ['x-absent'] }),
      code: 'token_malformed',
    },
    { name: 'crit is not an array', token: () => forge(es, { crit: 'exp' }), code: 'token_malformed' },
  ])
})

describe('RS-2 typ', () => {
  const idTokenClaims = { aud: CLIENT_ID, nonce: 'n' }
  const PLAIN = [undefined, 'JWT', 'jwt', 'application/jwt']
  runCases([
    ...['dpop+jwt', 'secevent+jwt', 'at+jwt ', 'at-jwt', 'JOSE'].map(
      (typ): Case => ({
        name: `typ ${JSON.stringify(typ)}`,
        token: () => forge(es, { typ }),
        code: 'token_type_invalid',
      }),
    ),
    { name: 'typ not a string', token: () => forge(es, { typ: ['at+jwt'] }), code: 'token_type_invalid' },
    ...['at+jwt', 'AT+JWT', 'At+Jwt', 'application/at+jwt', 'Application/AT+JWT'].map(
      (typ): Case => ({ name: `typ ${typ} accepted`, token: () => forge(es, { typ }), code: 'accepted' }),
    ),
    ...PLAIN.map(
      (typ): Case => ({
        name: `typ ${JSON.stringify(typ)} accepted when its aud is this resource (Auth0, Okta, Keycloak)`,
        token: () => forge(es, { typ }),
        code: 'accepted',
      }),
    ),
    ...PLAIN.map(
      (typ): Case => ({
        name: `typ ${JSON.stringify(typ)} refused for another accepted audience without acceptPlainJwt`,
        token: () => forge(es, { typ }, { aud: API_AUDIENCE }),
        code: 'token_type_invalid',
        guard: 'otherAudiences',
      }),
    ),
    ...[undefined, 'JWT', 'application/jwt', 'at+jwt'].map(
      (typ): Case => ({
        name: `typ ${JSON.stringify(typ)} accepted with acceptPlainJwt`,
        token: () => forge(es, { typ }),
        code: 'accepted',
        guard: 'plainJwt',
      }),
    ),
    ...['dpop+jwt', 'secevent+jwt'].map(
      (typ): Case => ({
        name: `typ ${typ} still refused with acceptPlainJwt`,
        token: () => forge(es, { typ }),
        code: 'token_type_invalid',
        guard: 'plainJwt',
      }),
    ),
    {
      name: 'an ID token (typ JWT, aud = client_id) replayed as an access token fails on its audience',
      token: () => forge(es, { typ: 'JWT' }, idTokenClaims),
      code: 'audience_mismatch',
    },
    {
      name: 'an ID token fails on its type even where the client_id is an accepted audience',
      token: () => forge(es, { typ: 'JWT' }, idTokenClaims),
      code: 'token_type_invalid',
      guard: 'otherAudiences',
    },
    {
      name: 'the same ID token with acceptPlainJwt still fails on its audience',
      token: () => forge(es, { typ: 'JWT' }, idTokenClaims),
      code: 'audience_mismatch',
      guard: 'plainJwt',
    },
  ])

  it('the refusal of a plain JWT names OAUTH_ACCEPT_PLAIN_JWT and the audience it carries', async () => {
    const warnings: string[] = []
    const guard = await createGuard({
      resource: RESOURCE,
      authorizationServers: [{ issuer: es.issuer }],
      audiences: [RESOURCE, API_AUDIENCE],
      cacheSeconds: 0,
      logger: { warn: (message, fields) => warnings.push(`${message} ${JSON.stringify(fields)}`), info() {} },
    })
    await expectCheck(
      guard,
      bearerRequest(RESOURCE, await forge(es, { typ: 'JWT' }, { aud: API_AUDIENCE })),
      'token_type_invalid',
    )
    assert.match(warnings.join('\n'), /OAUTH_ACCEPT_PLAIN_JWT=true/)
    assert.match(warnings.join('\n'), /https:\/\/api\.example\.com/)
  })
})

describe('RS-2 structures that are not plain JWS', () => {
  const jwe = () =>
    [
      encodeSegment({ alg: 'RSA-OAEP-256', enc: 'A256GCM', typ: 'at+jwt' }),
      'a2V5',
      'aXY',
      'Y2lwaGVy',
      'dGFn',
    ].join('.')
  runCases([
    { name: 'b64: false', token: () => forge(es, { b64: false }), code: 'token_malformed' },
    {
      name: 'b64: false listed in crit',
      token: () => forge(es, { b64: false, crit: ['b64'] }),
      code: 'token_malformed',
    },
    { name: 'cty JWT (nested)', token: () => forge(es, { cty: 'JWT' }), code: 'token_malformed' },
    { name: 'cty jwt (nested, lower case)', token: () => forge(es, { cty: 'jwt' }), code: 'token_malformed' },
    { name: 'zip DEF', token: () => forge(es, { zip: 'DEF' }), code: 'token_malformed' },
    // Five segments do not look like a JWS, so the guard treats them as opaque (introspection's business).
    { name: 'JWE (5 segments)', token: jwe, code: 'token_opaque' },
  ])
})

describe('RS-2 keys named by the token itself are never fetched or used', () => {
  const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const attackerJwk = { ...attacker.publicKey.export({ format: 'jwk' }), kid: 'attacker', alg: 'ES256' }
  const signedByAttacker = (header: Record<string, unknown>) =>
    signJws({ alg: 'ES256', typ: 'at+jwt', kid: 'attacker', ...header }, claimsFor(es), attacker.privateKey)
  runCases([
    {
      name: 'jku to the listener, attacker key',
      token: () => signedByAttacker({ jku: jkuUrl }),
      code: 'key_not_found',
    },
    {
      name: 'x5u to the listener, attacker key',
      token: () => signedByAttacker({ x5u: jkuUrl }),
      code: 'key_not_found',
    },
    {
      name: 'jku to the listener, real key (jku ignored)',
      token: () => forge(es, { jku: jkuUrl }),
      code: 'accepted',
    },
    {
      name: 'x5u to the listener, real key (x5u ignored)',
      token: () => forge(es, { x5u: jkuUrl }),
      code: 'accepted',
    },
    {
      name: 'embedded jwk of the attacker key, attacker kid',
      token: () => signedByAttacker({ jwk: attackerJwk }),
      code: 'key_not_found',
    },
    {
      name: 'embedded jwk of the attacker key, no kid',
      token: () => signedByAttacker({ jwk: attackerJwk, kid: undefined }),
      code: 'signature_invalid',
    },
    {
      name: 'embedded jwk of the attacker key, the real kid',
      token: () => signedByAttacker({ jwk: attackerJwk, kid: es.kid }),
      code: 'signature_invalid',
    },
    {
      name: 'x5c of junk, attacker key, the real kid',
      token: () => signedByAttacker({ x5c: ['MIIB'], kid: es.kid }),
      code: 'signature_invalid',
    },
  ])
  it('the jku/x5u listener received no request', () => {
    assert.equal(jkuRequests, 0)
  })
})

describe('RS-3 syntax and size, refused before any crypto', () => {
  // Segments of a genuine token; the ES256 signature segment is 86 characters, so it has unused bits.
  const parts = () => forge(es).split('.') as [string, string, string]
  const joined = (h: string, p: string, s: string) => `${h}.${p}.${s}`
  const cases: Case[] = [
    { name: 'control: the genuine token', token: () => joined(...parts()), code: 'accepted' },
    {
      // The header segment was just decoded and cached: reusing it must not reuse any verdict.
      name: 'the header segment of the token before, with a signature made for another payload',
      token: () => {
        const [h, p] = parts()
        return joined(h, p, parts()[2])
      },
      code: 'signature_invalid',
    },
    { name: '2 segments', token: () => parts().slice(0, 2).join('.'), code: 'token_opaque' },
    { name: '4 segments', token: () => [...parts(), parts()[2]].join('.'), code: 'token_opaque' },
    { name: 'an extra trailing dot', token: () => `${joined(...parts())}.`, code: 'token_opaque' },
    { name: 'empty header', token: () => joined('', parts()[1], parts()[2]), code: 'token_malformed' },
    { name: 'empty payload', token: () => joined(parts()[0], '', parts()[2]), code: 'token_malformed' },
    { name: 'empty signature', token: () => joined(parts()[0], parts()[1], ''), code: 'token_malformed' },
    { name: 'only dots', token: () => '..', code: 'token_malformed' },
    {
      name: 'a space inside',
      token: () => joined(parts()[0], `${parts()[1]} `, parts()[2]),
      code: 'token_malformed',
    },
    { name: 'a trailing newline', token: () => `${joined(...parts())}\n`, code: 'token_malformed' },
    {
      name: 'a tab inside',
      token: () => joined(`\t${parts()[0]}`, parts()[1], parts()[2]),
      code: 'token_malformed',
    },
    { name: '= padding on the signature', token: () => `${joined(...parts())}==`, code: 'token_malformed' },
    {
      name: '= padding on the header',
      token: () => joined(`${parts()[0]}=`, parts()[1], parts()[2]),
      code: 'token_malformed',
    },
    {
      name: '+ in the signature (base64, not base64url)',
      token: () => {
        const [h, p, s] = parts()
        return joined(h, p, `${s.slice(0, 10)}+${s.slice(11)}`)
      },
      code: 'token_malformed',
    },
    {
      name: '/ in the signature (base64, not base64url)',
      token: () => {
        const [h, p, s] = parts()
        return joined(h, p, `${s.slice(0, 10)}/${s.slice(11)}`)
      },
      code: 'token_malformed',
    },
    {
      name: 'non-ASCII letter',
      token: () => joined(parts()[0], `${parts()[1]}é`, parts()[2]),
      code: 'token_malformed',
    },
    {
      name: 'fullwidth letter',
      token: () => joined(`Ａ${parts()[0]}`, parts()[1], parts()[2]),
      code: 'token_malformed',
    },
    {
      name: 'non-canonical trailing bits in the signature (same bytes)',
      token: () => {
        const [h, p, s] = parts()
        return joined(h, p, withTrailingBits(s))
      },
      code: 'token_malformed',
    },
    {
      name: 'non-canonical trailing bits in the payload',
      token: () => {
        const [h, , s] = parts()
        return joined(h, withTrailingBits(encodeSegment({ a: 1 })), s)
      },
      code: 'token_malformed',
    },
    ...['[]', '"at+jwt"', 'null', '42', 'true', '{', 'not json'].flatMap((json): Case[] => [
      {
        name: `header ${json} (not a JSON object)`,
        token: () => joined(encodeSegment(Buffer.from(json)), parts()[1], parts()[2]),
        code: 'token_malformed',
      },
      {
        name: `payload ${json} (not a JSON object)`,
        token: () => joined(parts()[0], encodeSegment(Buffer.from(json)), parts()[2]),
        code: 'token_malformed',
      },
    ]),
    {
      name: 'invalid UTF-8 in the header',
      token: () =>
        joined(
          encodeSegment(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])),
          parts()[1],
          parts()[2],
        ),
      code: 'token_malformed',
    },
    {
      name: 'invalid UTF-8 in the payload (lone surrogate in CESU-8)',
      token: () => {
        const payload = Buffer.concat([
          Buffer.from('{"sub":"'),
          Buffer.from([0xed, 0xa0, 0x80]),
          Buffer.from('"}'),
        ])
        return joined(parts()[0], encodeSegment(payload), parts()[2])
      },
      code: 'token_malformed',
    },
    {
      name: 'over maxTokenBytes, genuine structure',
      token: () => forge(es, {}, { pad: 'x'.repeat(8192) }),
      code: 'token_too_large',
    },
    {
      name: 'over maxTokenBytes, three junk segments',
      token: () => `a.b.${'!'.repeat(9000)}`,
      code: 'token_too_large',
    },
    {
      name: 'over maxTokenBytes, one segment',
      token: () => 'x'.repeat(9000),
      code: 'token_too_large',
    },
  ]
  for (const c of cases) {
    it(c.name, async () => {
      const outcome = await guards.default.verifyToken(c.token()).then(
        () => 'accepted',
        (error: { code: string }) => error.code,
      )
      assert.equal(outcome, c.code)
    })
  }
})
