import { createPublicKey, verify } from 'node:crypto'
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js'
import type { OAuthTokenVerifier } from '@modelcontextprotocol/sdk/server/auth/provider.js'
import { createRemoteJWKSet, importJWK, type JWTVerifyGetKey, type JWTVerifyOptions, jwtVerify } from 'jose'
import { derFromP1363 } from '../src/guard/lib/algorithms.ts'
import type { TestIdp } from '../test/support/idp.ts'
import {
  ALGORITHMS,
  accessTokenClaims,
  type BenchAlgorithm,
  guardFor,
  RESOURCE,
  startIssuer,
} from './fixtures.ts'
import { type Measurement, measureSideBySide } from './measure.ts'

export interface VerifyCase {
  name: string
  measurement: Measurement
}

export interface VerifyResult {
  alg: BenchAlgorithm
  tokenBytes: number
  cases: VerifyCase[]
}

export const RAW_CASE = 'raw crypto.verify, signature only (physical limit)'
export const GUARD_COLD_CASE = 'guard verifyToken, cache off'
export const GUARD_WARM_CASES = [
  'guard verifyToken, cache on (same token)',
  'guard check(request head), cache on (same token)',
] as const
export const FAST_JWT_CACHE_CASE = 'fast-jwt, cache on (same token)'

/**
 * fast-jwt is a baseline only, loaded when installed (a devDependency): a name the type checker does not
 * resolve, so the benchmark still runs, without its rows, where it is missing.
 */
const FAST_JWT = 'fast-jwt'
type FastJwtVerifier = (token: string) => unknown
interface FastJwt {
  createVerifier(options: Record<string, unknown>): FastJwtVerifier
}
const fastJwt = (await import(FAST_JWT).catch(() => undefined)) as FastJwt | undefined

/**
 * A copy of a string that shares nothing with it: what a server gets from its HTTP parser on every request.
 * Warm cases look tokens up with it, as a hash a string caches on itself would otherwise flatter them.
 */
const fresh = (value: string): string => ` ${value}`.slice(1)

/**
 * The raw case: `token`'s signature checked with the cheapest call node:crypto offers, the key bare (an
 * options object costs two caught exceptions per call, about 20 us) and the ES256 signature in DER, both
 * prepared before the loop.
 */
export function rawVerify(alg: BenchAlgorithm, idp: TestIdp, token: string): () => void {
  const publicKey = createPublicKey(idp.signingKey)
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const signingInput = Buffer.from(`${header}.${payload}`)
  const jwsSignature = Buffer.from(signature, 'base64url')
  const signatureBytes = alg === 'ES256' ? derFromP1363(jwsSignature) : jwsSignature
  const hash = alg === 'EdDSA' ? null : 'sha256'
  return () => {
    if (!verify(hash, signingInput, publicKey, signatureBytes)) throw new Error('raw verify failed')
  }
}

export async function benchVerify(onProgress: (line: string) => void): Promise<VerifyResult[]> {
  const results: VerifyResult[] = []
  for (const alg of ALGORITHMS) {
    const idp = await startIssuer(alg)
    try {
      const token = await idp.sign(accessTokenClaims(idp.issuer))
      const cases = await verifyCases(alg, idp, token)
      onProgress(`${alg}: ${cases.map(([name]) => name).join(', ')}`)
      const measurements = await measureSideBySide(cases.map(([, op]) => op))
      results.push({
        alg,
        tokenBytes: Buffer.byteLength(token),
        cases: cases.map(([name], i) => ({ name, measurement: measurements[i] as Measurement })),
      })
    } finally {
      await idp.close()
    }
  }
  return results
}

/** Every case verifies the same token and throws if it does not accept it. */
async function verifyCases(
  alg: BenchAlgorithm,
  idp: TestIdp,
  token: string,
): Promise<[string, () => unknown][]> {
  const publicKey = createPublicKey(idp.signingKey)
  const cryptoKey = await importJWK({ ...publicKey.export({ format: 'jwk' }), kid: idp.kid }, alg)
  const strict = strictJoseOptions(alg, idp.issuer)
  const guardUncached = await guardFor(idp, 0)
  const guardCached = await guardFor(idp)
  const sdkBearerAuth = await sdkBearerPath(idp, strict, token)
  const authorization = `Bearer ${token}`
  const head = () => ({ method: 'POST', url: '/mcp', headers: { authorization: fresh(authorization) } })
  const cases: [string, () => unknown][] = [
    [RAW_CASE, rawVerify(alg, idp, token)],
    ['jose jwtVerify, strict', () => jwtVerify(token, cryptoKey, strict)],
    [GUARD_COLD_CASE, () => guardUncached.verifyToken(token)],
    [GUARD_WARM_CASES[0], () => guardCached.verifyToken(fresh(token))],
    [
      GUARD_WARM_CASES[1],
      async () => {
        if (!(await guardCached.check(head())).ok) throw new Error('the guard refused the token')
      },
    ],
    ['MCP SDK v1 requireBearerAuth, jose verifier', sdkBearerAuth],
  ]
  if (fastJwt) {
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString()
    const options = {
      key: pem,
      algorithms: [alg],
      allowedIss: idp.issuer,
      allowedAud: RESOURCE,
      checkTyp: 'at+jwt',
      requiredClaims: strict.requiredClaims,
    }
    const uncached = fastJwt.createVerifier(options)
    const cached = fastJwt.createVerifier({ ...options, cache: true })
    cases.push(['fast-jwt, cache off', () => uncached(token)])
    cases.push([FAST_JWT_CACHE_CASE, () => cached(fresh(token))])
  }
  return cases
}

function strictJoseOptions(alg: BenchAlgorithm, issuer: string): JWTVerifyOptions {
  return {
    issuer,
    audience: RESOURCE,
    algorithms: [alg],
    typ: 'at+jwt',
    requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id'],
  }
}

/**
 * The SDK's middleware, called in-process as Express would call it. On success it reads only
 * `req.headers.authorization` and calls `next`, so a bare request object drives it faithfully; the response
 * is touched only to refuse, which fails the benchmark. The verifier is what an SDK user writes with jose: a
 * remote JWKS found through discovery, and the same strict checks as the jose case.
 */
async function sdkBearerPath(
  idp: TestIdp,
  strict: JWTVerifyOptions,
  token: string,
): Promise<() => Promise<void>> {
  const discovery = await fetch(`${idp.issuer}/.well-known/openid-configuration`)
  const { jwks_uri } = (await discovery.json()) as { jwks_uri: string }
  const keys: JWTVerifyGetKey = createRemoteJWKSet(new URL(jwks_uri))
  const verifier: OAuthTokenVerifier = {
    async verifyAccessToken(accessToken) {
      const { payload } = await jwtVerify(accessToken, keys, strict)
      return {
        token: accessToken,
        clientId: String(payload.client_id),
        scopes: typeof payload.scope === 'string' ? payload.scope.split(' ') : [],
        expiresAt: payload.exp,
        resource: new URL(String(payload.aud)),
      }
    },
  }
  const middleware = requireBearerAuth({ verifier, expectedResource: new URL(RESOURCE) })
  type Args = Parameters<typeof middleware>
  const request = { headers: { authorization: `Bearer ${token}` } } as unknown as Args[0]
  const refuse = {
    set: () => refuse,
    status: (status: number) => {
      throw new Error(`the SDK bearer path refused the token with ${status}`)
    },
  } as unknown as Args[1]
  return async () => {
    let passed = false
    await middleware(request, refuse, () => {
      passed = true
    })
    if (!passed) throw new Error('the SDK bearer path did not call next()')
  }
}
