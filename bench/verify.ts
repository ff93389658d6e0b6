import { createPublicKey, type KeyObject, verify } from 'node:crypto'
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js'
import type { OAuthTokenVerifier } from '@modelcontextprotocol/sdk/server/auth/provider.js'
import { createRemoteJWKSet, importJWK, type JWTVerifyGetKey, type JWTVerifyOptions, jwtVerify } from 'jose'
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

const RAW_VERIFY: Record<BenchAlgorithm, (data: Buffer, key: KeyObject, signature: Buffer) => boolean> = {
  RS256: (data, key, signature) => verify('sha256', data, key, signature),
  ES256: (data, key, signature) => verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature),
  EdDSA: (data, key, signature) => verify(null, data, key, signature),
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
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const signingInput = Buffer.from(`${header}.${payload}`)
  const signatureBytes = Buffer.from(signature, 'base64url')
  const cryptoKey = await importJWK({ ...publicKey.export({ format: 'jwk' }), kid: idp.kid }, alg)
  const strict = strictJoseOptions(alg, idp.issuer)
  const guardUncached = await guardFor(idp, 0)
  const guardCached = await guardFor(idp)
  const sdkBearerAuth = await sdkBearerPath(idp, strict, token)
  return [
    [
      RAW_CASE,
      () => {
        if (!RAW_VERIFY[alg](signingInput, publicKey, signatureBytes)) throw new Error('raw verify failed')
      },
    ],
    ['jose jwtVerify, strict', () => jwtVerify(token, cryptoKey, strict)],
    ['guard verifyToken, cache off', () => guardUncached.verifyToken(token)],
    ['guard verifyToken, cache on (same token)', () => guardCached.verifyToken(token)],
    ['MCP SDK v1 requireBearerAuth, jose verifier', sdkBearerAuth],
  ]
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
