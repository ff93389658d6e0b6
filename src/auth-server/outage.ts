import type Provider from 'oidc-provider'
import { StoreUnavailableError } from '../storage/index.ts'
import type { AuthServerLogger } from './options.ts'

type KoaContext = Parameters<Parameters<Provider['use']>[0]>[0]

/** What a client is told to wait before retrying while the store is down. */
export const RETRY_AFTER_SECONDS = 5

/**
 * A store that is down is not a server error: every request that failed on it gets 503 with `Retry-After`
 * and an OAuth error body (`temporarily_unavailable`), whether the failure was met in Gatehouse's middleware
 * (rate limits) or inside the provider (its `server_error` event). The outage is logged once, and its end.
 * Any other error escaping the middleware is a JSON `server_error`, logged, never Koa's text/plain and stack.
 */
export class StoreOutage {
  readonly #logger: AuthServerLogger
  readonly #failed = new WeakSet<object>()
  #down = false

  constructor(logger: AuthServerLogger) {
    this.#logger = logger
  }

  /** For the provider's `server_error` event: true when it was the store's (then answered as 503). */
  serverError(ctx: object, error: unknown): boolean {
    if (!(error instanceof StoreUnavailableError)) return false
    this.#fail(ctx, error)
    return true
  }

  /** Outermost middleware: recovery is seen on the token route, which always reaches the store. */
  middleware(tokenRoute: string): Parameters<Provider['use']>[0] {
    return async (ctx, next) => {
      try {
        await next()
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) return this.#serverError(ctx, error)
        this.#fail(ctx, error)
      }
      if (this.#failed.has(ctx)) return unavailable(ctx)
      if (this.#down && ctx.path === tokenRoute && ctx.status < 500) {
        this.#down = false
        this.#logger.info('storage available again')
      }
    }
  }

  #fail(ctx: object, error: StoreUnavailableError) {
    this.#failed.add(ctx)
    if (this.#down) return
    this.#down = true
    this.#logger.warn('storage unavailable: answering 503 until it is back', { error: error.message })
  }

  #serverError(ctx: KoaContext, error: unknown) {
    const status = (error as { status?: unknown }).status
    // Koa's own HTTP errors (4xx) keep their answer.
    if (typeof status === 'number' && status < 500) throw error
    this.#logger.warn('authorization server error', {
      error: error instanceof Error ? error.message : String(error),
    })
    ctx.status = 500
    ctx.type = 'application/json'
    ctx.body = { error: 'server_error', error_description: 'the authorization server failed; retry later' }
  }
}

/** The provider's HTML error page keeps its body; a JSON answer (or none yet) becomes the OAuth error. */
function unavailable(ctx: KoaContext) {
  ctx.status = 503
  ctx.set('retry-after', String(RETRY_AFTER_SECONDS))
  if (typeof ctx.body === 'string') return
  ctx.type = 'application/json'
  ctx.body = {
    error: 'temporarily_unavailable',
    error_description: `the authorization server's storage is unavailable; retry in ${RETRY_AFTER_SECONDS} s`,
  }
}
