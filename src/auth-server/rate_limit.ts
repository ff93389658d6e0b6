import { AsyncLocalStorage } from 'node:async_hooks'
import type Provider from 'oidc-provider'
import { clientAddress } from '../guard/lib/http.ts'
import type { RateLimitHit, Store } from '../storage/store.ts'
import { AuthServerError, sendOAuthError } from './errors.ts'

type KoaContext = Parameters<Parameters<Provider['use']>[0]>[0]

/** At most `limit` requests per `windowSeconds`: every rate limit of the authorization server. */
export interface RateLimit {
  limit: number
  windowSeconds: number
}

/** `what` names the option in the message, e.g. `authorization server: tokenRateLimit`. */
export function checkRate(value: RateLimit, what: string): RateLimit {
  const valid =
    Number.isInteger(value?.limit) &&
    value.limit > 0 &&
    Number.isInteger(value.windowSeconds) &&
    value.windowSeconds > 0
  if (!valid) {
    throw new AuthServerError(
      'options_invalid',
      `${what} must be { limit, windowSeconds } with whole numbers above 0`,
    )
  }
  return value
}

/**
 * Counts the request in `bucket` (shared by every instance on the store) and, past the limit, answers 429
 * with `Retry-After` itself; returns whether it did, so the caller stops.
 */
export async function refusedOverLimit(
  ctx: KoaContext,
  store: Store,
  bucket: string,
  rate: RateLimit,
  what: string,
): Promise<boolean> {
  if (await store.hit(bucket, rate.limit, rate.windowSeconds)) return false
  sendOverLimit(ctx, rate, what)
  return true
}

function sendOverLimit(ctx: KoaContext, { limit, windowSeconds }: RateLimit, what: string): void {
  sendOAuthError(
    ctx,
    'too_many_requests',
    `at most ${limit} ${what} per ${windowSeconds} s from one address; retry later`,
    { 'retry-after': String(windowSeconds) },
  )
}

/** Thrown inside the provider when a token request is over the limit; the middleware answers 429 instead. */
export class TokenRequestOverLimit extends Error {}

interface TokenCount {
  readonly hit: RateLimitHit
  state: 'pending' | 'counting' | 'within' | 'over'
}

const tokenCounts = new AsyncLocalStorage<TokenCount>()

function settled(count: TokenCount, withinLimit: boolean): void {
  count.state = withinLimit ? 'within' : 'over'
  if (!withinLimit) throw new TokenRequestOverLimit('token requests over the limit')
}

/**
 * For the read of the token request's code or refresh token: the request's count, to be made in the same
 * statement, and `settle` with what it answered (it throws {@link TokenRequestOverLimit} when over).
 * Undefined outside a token request or once the request was counted.
 */
export function takeTokenCount(): { hit: RateLimitHit; settle(withinLimit: boolean): void } | undefined {
  const count = tokenCounts.getStore()
  if (count?.state !== 'pending') return undefined
  count.state = 'counting'
  return { hit: count.hit, settle: (withinLimit) => settled(count, withinLimit) }
}

/**
 * Counts the token request now unless it has been: before a token is minted from no code or refresh token
 * (client credentials, token exchange). Throws {@link TokenRequestOverLimit} when over.
 */
export async function countTokenRequest(store: Store): Promise<void> {
  const taken = takeTokenCount()
  if (taken) taken.settle(await store.hit(taken.hit.bucket, taken.hit.limit, taken.hit.windowSeconds))
}

/** Buckets known to be over the limit until the end of their window, by this instance. */
const OVER_MEMORY = 10_000

/**
 * Token requests per client address: codes and refresh tokens carry 256 bits, so this is about cost and
 * noise more than guessing, but OAuth 2.1 ("Credentials-Guessing Attacks") asks for it all the same.
 *
 * A request is counted with the read of its code or refresh token, in one statement (see
 * {@link takeTokenCount}); one that reads neither is counted before it mints a token, or else after the
 * provider answered (a refusal: then 429 replaces it). Counts only grow within a window, so an address found
 * over the limit is refused at once for the rest of the window, without the store or the provider.
 */
export function tokenRateLimitMiddleware(
  store: Store,
  route: string,
  rate: RateLimit,
  trustProxy: boolean,
): Parameters<Provider['use']>[0] {
  const overUntil = new Map<string, number>()
  return async (ctx, next) => {
    if (ctx.path !== route || ctx.method !== 'POST') return next()
    const bucket = `token:${clientAddress(ctx.req, trustProxy)}`
    const now = Date.now() / 1000
    if ((overUntil.get(bucket) ?? 0) > now) return refuse(ctx, rate)
    const count: TokenCount = { hit: { bucket, ...rate }, state: 'pending' }
    await tokenCounts.run(count, next)
    if (count.state === 'pending')
      count.state = (await store.hit(bucket, rate.limit, rate.windowSeconds)) ? 'within' : 'over'
    if (count.state !== 'over') return
    if (overUntil.size >= OVER_MEMORY) overUntil.clear()
    overUntil.set(bucket, now - (now % rate.windowSeconds) + rate.windowSeconds)
    refuse(ctx, rate)
  }
}

function refuse(ctx: KoaContext, rate: RateLimit): void {
  // The provider may have answered (a refusal): its challenge does not belong to this answer.
  ctx.remove('www-authenticate')
  sendOverLimit(ctx, rate, 'token requests')
}
