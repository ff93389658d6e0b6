import { errors } from 'oidc-provider'
import { OidcConsumeConflictError } from '../storage/index.ts'
import type { OidcAdapter, OidcPayload, Store } from '../storage/store.ts'
import {
  DEFERRED_MODELS,
  deferring,
  REQUEST_CACHED_MODELS,
  requestCached,
  withGrantPrefetch,
} from './request_cache.ts'
import { REDEEMED_MODELS, redeemingWrites } from './rotation.ts'

/** How often one instance re-extends the lifetime of a registered client that is in use. */
const EXTEND_EVERY_MS = 3_600_000

/**
 * The `oidc-provider` adapter over the store. A lost compare-and-set on `consume` (a concurrent redemption
 * of the same code or refresh token) becomes `invalid_grant`, so exactly one racer gets tokens. A refresh
 * token's rotation is one transaction, and a retry within `refreshReuseInterval` seconds continues the grant
 * (see rotation.ts). Registered
 * clients expire after `clientTtl` seconds without use; each use pushes the expiry back.
 *
 * A registered client's record keeps the ID token algorithm of the key that signed when it registered (the
 * provider stores its defaults); once a rotation to another algorithm has taken that key out of the JWKS, the
 * provider would refuse the client. The value is dropped on load so the current default applies.
 */
export function adapterFactory(
  store: Store,
  clientTtl: number,
  publishedAlgs: ReadonlySet<string>,
  refreshReuseInterval: number,
) {
  const extendedAt = new Map<string, number>()
  return (model: string) => {
    const stored = DEFERRED_MODELS.has(model)
      ? deferring(model, store.oidcAdapter(model), store)
      : store.oidcAdapter(model)
    const redeemed = REDEEMED_MODELS.has(model)
    const inner = REQUEST_CACHED_MODELS.has(model)
      ? requestCached(model, stored)
      : redeemed
        ? withGrantPrefetch(stored)
        : stored
    const writes = redeemed ? redeemingWrites(model, store, inner, refreshReuseInterval) : inner
    const adapter: OidcAdapter = {
      upsert: async (id, payload, expiresIn) => {
        if (model !== 'Client') return lostRaceIsInvalidGrant(writes.upsert(id, payload, expiresIn))
        extendedAt.set(id, Date.now())
        return inner.upsert(id, payload, clientTtl)
      },
      find: async (id) => {
        const found = await inner.find(id)
        if (!found || model !== 'Client') return found
        await extend(id, found)
        const alg = found.id_token_signed_response_alg
        if (typeof alg === 'string' && !publishedAlgs.has(alg)) delete found.id_token_signed_response_alg
        return found
      },
      findWithGrant: (id, count) => inner.findWithGrant(id, count),
      findByUid: (uid) => inner.findByUid(uid),
      findByUserCode: (code) => inner.findByUserCode(code),
      consume: (id) => lostRaceIsInvalidGrant(writes.consume(id)),
      destroy: (id) => inner.destroy(id),
      revokeByGrantId: (grantId) => inner.revokeByGrantId(grantId),
    }

    async function extend(id: string, payload: OidcPayload) {
      const now = Date.now()
      if (now - (extendedAt.get(id) ?? 0) < EXTEND_EVERY_MS) return
      extendedAt.set(id, now)
      if (extendedAt.size > 10_000) extendedAt.delete(extendedAt.keys().next().value as string)
      await inner.upsert(id, payload, clientTtl)
    }
    return adapter
  }
}

async function lostRaceIsInvalidGrant(write: Promise<void>): Promise<void> {
  try {
    await write
  } catch (error) {
    // Only a lost race becomes invalid_grant; a database failure stays a server error.
    if (error instanceof OidcConsumeConflictError) throw new errors.InvalidGrant('grant already used')
    throw error
  }
}
