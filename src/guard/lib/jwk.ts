import { createPublicKey, type KeyObject } from 'node:crypto'
import { isJwsAlgorithm, type JwsAlgorithm, keyFitsAlgorithm } from './algorithms.ts'

export interface VerificationKey {
  kid: string | undefined
  kty: string
  crv: string | undefined
  /** The JWK's own `alg`, when it pins one. */
  alg: JwsAlgorithm | undefined
  key: KeyObject
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'] as const
const MIN_RSA_BITS = 2048

/**
 * Turns one JWK from an issuer's JWKS into a verification key, or explains why it must not be used.
 * Refused: symmetric and private keys, encryption keys, RSA moduli under 2048 bits, RSA exponent 1,
 * curves and algorithms the guard does not verify, and anything node:crypto cannot import.
 * Not checked: ROCA-weak moduli (no cheap test exists in node:crypto).
 */
export function importVerificationKey(jwk: unknown): VerificationKey | { rejected: string } {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return { rejected: 'not a JSON object' }
  const k = jwk as Record<string, unknown>
  if (k.kty !== 'RSA' && k.kty !== 'EC' && k.kty !== 'OKP')
    return { rejected: `unsupported kty ${JSON.stringify(k.kty)}` }
  for (const member of PRIVATE_MEMBERS)
    if (member in k) return { rejected: `contains private member "${member}"` }
  if (k.kid !== undefined && typeof k.kid !== 'string') return { rejected: 'kid is not a string' }
  if (k.use !== undefined && k.use !== 'sig')
    return { rejected: `use is ${JSON.stringify(k.use)}, not "sig"` }
  if (k.key_ops !== undefined && !(Array.isArray(k.key_ops) && k.key_ops.includes('verify'))) {
    return { rejected: 'key_ops does not include "verify"' }
  }
  if (k.alg !== undefined && !isJwsAlgorithm(k.alg))
    return { rejected: `unsupported alg ${JSON.stringify(k.alg)}` }
  const crv = typeof k.crv === 'string' ? k.crv : undefined
  if (k.alg !== undefined && !keyFitsAlgorithm(k.alg as JwsAlgorithm, k.kty, crv)) {
    return { rejected: `alg ${String(k.alg)} does not fit a ${k.kty} ${crv ?? ''} key`.trimEnd() }
  }
  if (k.kty === 'RSA') {
    const weakness = rsaWeakness(k)
    if (weakness) return { rejected: weakness }
  } else if (!['P-256', 'P-384', 'P-521', 'Ed25519'].includes(crv ?? '')) {
    return { rejected: `unsupported curve ${JSON.stringify(k.crv)}` }
  }
  let key: KeyObject
  try {
    // Only the public members are handed over, so unknown extras cannot influence the import.
    const { kty, n, e, crv: c, x, y } = k as Record<string, string>
    key = createPublicKey({ key: { kty, n, e, crv: c, x, y }, format: 'jwk' } as Parameters<
      typeof createPublicKey
    >[0])
  } catch (cause) {
    return { rejected: `cannot be imported (${(cause as Error).message})` }
  }
  return { kid: k.kid as string | undefined, kty: k.kty, crv, alg: k.alg as JwsAlgorithm | undefined, key }
}

function rsaWeakness(k: Record<string, unknown>): string | undefined {
  if (typeof k.n !== 'string' || typeof k.e !== 'string') return 'RSA key without n or e'
  const n = Buffer.from(k.n, 'base64url')
  const e = Buffer.from(k.e, 'base64url')
  let bits = n.length * 8
  for (let i = 0; i < n.length && n[i] === 0; i++) bits -= 8
  const lead = n.find((b) => b !== 0) ?? 0
  bits -= Math.clz32(lead) - 24
  if (bits < MIN_RSA_BITS) return `RSA modulus of ${bits} bits is under ${MIN_RSA_BITS}`
  const exponent = BigInt(`0x${e.toString('hex') || '0'}`)
  if (exponent < 3n || exponent % 2n === 0n)
    return `RSA exponent ${exponent} is not an odd number of at least 3`
  return undefined
}
