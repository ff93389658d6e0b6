import type Provider from 'oidc-provider'
import { clientAddress } from '../guard/lib/http.ts'
import type { Store } from '../storage/store.ts'
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
  { limit, windowSeconds }: RateLimit,
  what: string,
): Promise<boolean> {
  if (await store.hit(bucket, limit, windowSeconds)) return false
  sendOAuthError(
    ctx,
    'too_many_requests',
    `at most ${limit} ${what} per ${windowSeconds} s from one address; retry later`,
    { 'retry-after': String(windowSeconds) },
  )
  return true
}

/**
 * Token requests per client address: codes and refresh tokens carry 256 bits, so this is about cost and
 * noise more than guessing, but OAuth 2.1 ("Credentials-Guessing Attacks") asks for it all the same.
 */
export function tokenRateLimitMiddleware(
  store: Store,
  route: string,
  rate: RateLimit,
  trustProxy: boolean,
): Parameters<Provider['use']>[0] {
  return async (ctx, next) => {
    if (
      ctx.path === route &&
      ctx.method === 'POST' &&
      (await refusedOverLimit(
        ctx,
        store,
        `token:${clientAddress(ctx.req, trustProxy)}`,
        rate,
        'token requests',
      ))
    ) {
      return
    }
    return next()
  }
}
