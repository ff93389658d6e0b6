import type { VerifiedToken } from '../guard/index.ts'
import { TtlCache } from '../guard/lib/ttl_cache.ts'
import type { Store } from '../storage/store.ts'

/**
 * How long an instance reuses the store's answer for one user and client: a revocation made anywhere (an
 * admin command, another instance on the same PostgreSQL) is enforced by every instance within this.
 */
export const REVOCATION_CACHE_SECONDS = 5

/**
 * The guard's `isRevoked` for the embedded authorization server's tokens: refused when issued (`iat`) at or
 * before the latest revocation listed for their user and client. Answers from memory while the cached
 * answer is fresh, so the hot path costs a map lookup.
 */
export function storeRevocationCheck(store: Store, issuer: string, cacheSeconds = REVOCATION_CACHE_SECONDS) {
  // null: the store had no revocation for that user and client.
  const latest = new TtlCache<number | null>(10_000)
  return (token: VerifiedToken): boolean | Promise<boolean> => {
    if (token.issuer !== issuer || token.subject === undefined) return false
    const { subject, clientId } = token
    // Without an iat the token cannot show it came after a revocation.
    const issuedAt = typeof token.claims.iat === 'number' ? token.claims.iat : Number.NEGATIVE_INFINITY
    const revoked = (revokedAt: number | null) => revokedAt !== null && issuedAt <= revokedAt
    const key = JSON.stringify([subject, clientId ?? null])
    const cached = latest.get(key)
    if (cached !== undefined) return revoked(cached)
    return store.revocations.revokedAt(subject, clientId).then((found) => {
      const revokedAt = found ?? null
      latest.set(key, revokedAt, Date.now() + cacheSeconds * 1000)
      return revoked(revokedAt)
    })
  }
}
