import { createHash } from 'node:crypto'
import { calculateJwkThumbprint, EmbeddedJWK, errors as joseErrors, jwtVerify } from 'jose'
import { GuardError } from './errors.ts'

export interface DpopPolicy {
  algorithms: readonly string[]
  /** How old a proof's `iat` may be; default 300 s. */
  maxAgeSeconds: number
  clockSkewSeconds: number
  /** Seen proof `jti`s, kept for the proof's lifetime. */
  replay: DpopReplayStore
}

/**
 * Where seen proofs are remembered: in memory by default (a bounded `ReplayCache`), or a store several
 * instances share, so that a proof replayed to another instance is refused too (RFC 9449 §11.1).
 */
export interface DpopReplayStore {
  /**
   * Remembers `key` until `expiresAt` (ms since the epoch): `added` the first time, `seen` while it is
   * remembered, `full` when nothing more can be remembered. A throw (the store unreachable) refuses the
   * proof with `dpop_replay_unavailable`: a proof that cannot be checked is never accepted.
   */
  add(key: string, expiresAt: number, now: number): ReplayVerdict | Promise<ReplayVerdict>
}

export type ReplayVerdict = 'added' | 'seen' | 'full'

export interface DpopRequest {
  proof: string
  method: string
  /** The URL the client addressed: the public origin plus the request path, without query or fragment. */
  url: string
  accessToken: string
  jkt: string
}

/**
 * Verifies a DPoP proof for a bound access token (RFC 9449 §4.3 and §7.1): `typ` dpop+jwt, an allowed
 * asymmetric `alg`, signed by the embedded public `jwk`, `htm` and `htu` matching the request, `iat` inside
 * the window, `jti` never seen before, `ath` the hash of the access token, and the key's thumbprint equal to
 * the token's `cnf.jkt`. Not checked: server-issued nonces (`DPoP-Nonce`).
 */
export async function verifyDpopProof(request: DpopRequest, policy: DpopPolicy, now: number): Promise<void> {
  let header: Record<string, unknown>
  let payload: Record<string, unknown>
  try {
    const result = await jwtVerify(request.proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: [...policy.algorithms],
      clockTolerance: policy.clockSkewSeconds,
    })
    header = result.protectedHeader as Record<string, unknown>
    payload = result.payload as Record<string, unknown>
  } catch (cause) {
    if (cause instanceof joseErrors.JOSEError)
      throw new GuardError('dpop_proof_invalid', `proof rejected: ${cause.message}`)
    throw cause
  }
  if (payload.htm !== request.method)
    throw new GuardError('dpop_proof_invalid', `htm ${JSON.stringify(payload.htm)} for a ${request.method}`)
  if (typeof payload.htu !== 'string' || stripUrl(payload.htu) !== stripUrl(request.url)) {
    throw new GuardError('dpop_proof_invalid', `htu ${JSON.stringify(payload.htu)} for ${request.url}`)
  }
  const iat = payload.iat
  if (
    typeof iat !== 'number' ||
    iat > now + policy.clockSkewSeconds ||
    iat < now - policy.maxAgeSeconds - policy.clockSkewSeconds
  ) {
    throw new GuardError('dpop_proof_invalid', 'iat missing or outside the accepted window')
  }
  const ath = createHash('sha256').update(request.accessToken).digest('base64url')
  if (payload.ath !== ath) throw new GuardError('dpop_proof_invalid', 'ath does not match the access token')
  const thumbprint = await calculateJwkThumbprint(
    header.jwk as Parameters<typeof calculateJwkThumbprint>[0],
    'sha256',
  )
  if (thumbprint !== request.jkt)
    throw new GuardError('dpop_binding_mismatch', 'proof key does not match cnf.jkt')
  if (typeof payload.jti !== 'string' || payload.jti === '')
    throw new GuardError('dpop_proof_invalid', 'jti missing')
  const expiresAt = (iat + policy.maxAgeSeconds + policy.clockSkewSeconds) * 1000
  let seen: ReplayVerdict
  try {
    seen = await policy.replay.add(`${thumbprint}:${payload.jti}`, expiresAt, now * 1000)
  } catch (cause) {
    throw new GuardError('dpop_replay_unavailable', (cause as Error).message, { cause })
  }
  if (seen === 'seen') throw new GuardError('dpop_proof_invalid', 'proof jti was already used')
  if (seen === 'full') {
    throw new GuardError(
      'dpop_replay_cache_full',
      'no room for another unexpired proof; raise dpop.replayCacheMaxEntries if this is real load',
    )
  }
}

/** RFC 9449 §4.3: compare htu without query and fragment, with scheme and host normalized by URL parsing. */
function stripUrl(value: string): string {
  try {
    const url = new URL(value)
    return `${url.origin}${url.pathname}`
  } catch {
    return `invalid:${value}`
  }
}
