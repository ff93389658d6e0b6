import { AsyncLocalStorage } from 'node:async_hooks'
import type { KoaContextWithOIDC, default as Provider } from 'oidc-provider'
import { errors } from 'oidc-provider'
import type { OidcAdapter, OidcWrite, Store } from '../storage/store.ts'
import { tokenIssuedWrite } from './audit.ts'

/**
 * Refresh token rotation and code redemption in one transaction, and the reuse interval.
 *
 * `oidc-provider` rotates in two writes (`consume` the old token, then `upsert` the new one); within a token
 * request the RefreshToken adapter defers the first and does both in one transaction when the second comes,
 * with a link old -> new kept for the reuse interval. A code's redemption likewise: its `consume` is done in
 * the transaction that stores the refresh token it gives (when the client gets one: otherwise at once). Either
 * transaction also records the `token.issued` audit event. A request that fails before the transaction
 * consumes nothing: it issued nothing either.
 *
 * When the answer is lost, the client's retry of the old
 * token finds it consumed: within the interval and while the successor is unused, the retry continues the
 * grant. Its rotation consumes the successor instead of the old token (a compare-and-set, so of several
 * retries one wins) and links the old token to the new one: the grant always has exactly one usable refresh
 * token. The replaced successor stays consumed with no link of its own, so whoever presents it later is
 * treated as a reuse and the grant is revoked.
 */

/** The store model of the links from a rotated refresh token to its successor. */
export const SUCCESSOR_MODEL = 'RefreshTokenSuccessor'

/** The models whose `consume` is deferred to the transaction that stores the refresh token they give. */
export const REDEEMED_MODELS: ReadonlySet<string> = new Set(['RefreshToken', 'AuthorizationCode'])

interface Rotation {
  /** When the request arrived (ms): a successor issued later went to a concurrent request, not a lost answer. */
  readonly arrivedAt: number
  readonly ctx: KoaContextWithOIDC
  /** A retry within the reuse interval: the successor its rotation consumes instead of the presented token. */
  replaces?: string
  /** The refresh token or code `consume` was called for; consumed in the transaction that stores its successor. */
  consumed?: { model: string; id: string }
}

const rotations = new AsyncLocalStorage<Rotation>()

/** Refresh tokens go to every client that registered the `refresh_token` grant (refresh.ts). */
export function issuesRefreshToken(client: { grantTypeAllowed(type: string): boolean }): boolean {
  return client.grantTypeAllowed('refresh_token')
}

/** Opens the rotation scope of each token request: the adapter and {@link continueRetry} read it. */
export function rotationScopeMiddleware(route: string): Parameters<Provider['use']>[0] {
  return (ctx, next) =>
    ctx.path === route && ctx.method === 'POST'
      ? rotations.run({ arrivedAt: Date.now(), ctx: ctx as KoaContextWithOIDC }, next)
      : next()
}

/** This request continues a grant from a consumed token: it must rotate, whatever the refresh policy says. */
export function isRetry(): boolean {
  return rotations.getStore()?.replaces !== undefined
}

interface PresentedToken {
  kind: string
  jti: string
  consumed?: unknown
}

/**
 * Called with the presented token once the provider has checked the client, the token's expiry and bindings
 * (DPoP, mTLS) and its grant, and before it looks at `consumed` (its `findAccount` hook is the one call in
 * between). A consumed refresh token whose successor is recorded (the reuse interval has not passed) and
 * unused continues: it is marked unconsumed for the provider, which then rotates it. Otherwise the provider
 * goes on as usual and revokes the grant, unless the successor went to a concurrent request of this round
 * (a race, not a reuse): then `invalid_grant` alone.
 */
export async function continueRetry(store: Store, token: PresentedToken): Promise<void> {
  const rotation = rotations.getStore()
  if (!rotation || token.kind !== 'RefreshToken' || !token.consumed) return
  const links = store.oidcAdapter(SUCCESSOR_MODEL)
  const link = await links.find(token.jti)
  if (typeof link?.successor !== 'string') return
  if (Number(link.issuedAt) >= rotation.arrivedAt) {
    throw new errors.InvalidGrant('refresh token already used by a concurrent request')
  }
  const successor = await store.oidcAdapter('RefreshToken').find(link.successor)
  if (successor && successor.consumed === undefined) {
    rotation.replaces = link.successor
    delete token.consumed
    return
  }
  // Consumed without a successor of its own: a concurrent retry replaced it just now.
  if (successor && !(await links.find(link.successor))) {
    throw new errors.InvalidGrant('refresh token already used by a concurrent request')
  }
}

/**
 * The `consume` and `upsert` of a {@link REDEEMED_MODELS} adapter within a token request: `consume` only notes
 * the token or code (a code whose client gets no refresh token is consumed at once); the refresh token's
 * `upsert` consumes it (or, for a retry, the successor it replaces), stores the refresh token, the link for
 * `reuseInterval` seconds when it rotates one, and the audit event, in one transaction. Outside a token
 * request both write at once.
 */
export function redeemingWrites(
  model: string,
  store: Store,
  inner: OidcAdapter,
  reuseInterval: number,
): Pick<OidcAdapter, 'consume' | 'upsert'> {
  return {
    consume: async (id) => {
      const rotation = rotations.getStore()
      const client = rotation?.ctx.oidc.client
      if (!rotation || (model !== 'RefreshToken' && !(client && issuesRefreshToken(client))))
        return inner.consume(id)
      rotation.consumed = { model, id }
    },
    upsert: async (id, payload, expiresIn) => {
      const rotation = rotations.getStore()
      const previous = rotation?.consumed
      if (model !== 'RefreshToken' || !rotation || previous === undefined)
        return inner.upsert(id, payload, expiresIn)
      rotation.consumed = undefined
      const rotates = previous.model === 'RefreshToken'
      const writes: OidcWrite[] = [
        { kind: 'consume', model: previous.model, id: rotation.replaces ?? previous.id },
        { kind: 'upsert', model: 'RefreshToken', id, payload, expiresIn },
      ]
      if (rotates && reuseInterval > 0) {
        writes.push({
          kind: 'upsert',
          model: SUCCESSOR_MODEL,
          id: previous.id,
          payload: { successor: id, issuedAt: Date.now(), grantId: payload.grantId },
          expiresIn: reuseInterval,
        })
      }
      writes.push(tokenIssuedWrite(rotation.ctx))
      await store.oidcTransaction(writes)
    },
  }
}
