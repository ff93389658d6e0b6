import type { CheckOptions, Guard } from '../guard.ts'
import type { VerifiedToken } from '../identity.ts'
import type { GuardRequest } from '../lib/request_head.ts'

export type Admission = { ok: true; token: VerifiedToken } | { ok: false; response: Response }

/**
 * The one decision every adapter makes: the Protected Resource Metadata for its paths, otherwise the
 * verified token or the challenge to send. Reads headers only, never the body.
 */
export async function admit(
  guard: Guard,
  request: GuardRequest,
  options: CheckOptions = {},
): Promise<Admission> {
  const metadata = guard.metadataResponse(request)
  if (metadata) return { ok: false, response: metadata }
  const result = await guard.check(request, options)
  return result.ok ? result : { ok: false, response: result.response }
}

/**
 * Guards any fetch handler (Hono's `app.fetch`, Bun, Deno, workers). `handler` runs only with a verified
 * token, and receives the request, body included, untouched.
 */
export function withGuard(
  guard: Guard,
  handler: (request: Request, token: VerifiedToken) => Promise<Response>,
  options: CheckOptions = {},
): (request: Request) => Promise<Response> {
  return async (request) => {
    const admission = await admit(guard, request, options)
    return admission.ok ? handler(request, admission.token) : admission.response
  }
}

/** The part of Hono's `Context` the middleware uses, so that hono stays out of the guard's dependencies. */
export interface HonoLikeContext {
  req: { raw: Request }
  set(key: 'auth', value: VerifiedToken): void
}

/**
 * Hono middleware: `app.use('*', guardHono(guard))`, then `c.get('auth')` in routes. Declare
 * `auth: VerifiedToken` in the app's `Variables` to type it.
 */
export function guardHono(
  guard: Guard,
  options: CheckOptions = {},
): (c: HonoLikeContext, next: () => Promise<void>) => Promise<Response | undefined> {
  return async (c, next) => {
    const admission = await admit(guard, c.req.raw, options)
    if (!admission.ok) return admission.response
    c.set('auth', admission.token)
    await next()
    return undefined
  }
}
