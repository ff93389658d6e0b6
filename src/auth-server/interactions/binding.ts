import { createHmac } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { AuthServerLogger } from '../options.ts'
import { constantTimeEqual, InteractionCookie, providerCookies } from './security.ts'

type Middleware = Parameters<Provider['use']>[0]

/**
 * Binds the provider's browser session to the account this browser signed in as. Cookies do not separate
 * ports, so a page on another port of the host can plant a session cookie it obtained by signing in itself
 * (login CSRF). At each sign-in the login pages set a second cookie, an HMAC of the account under a key
 * derived from the server secret; an authorization whose session's account does not match it is treated as
 * having no session: the browser signs in again.
 */
export class SessionBinding {
  readonly #cookie: InteractionCookie
  readonly #key: Buffer
  readonly #ttl: number
  readonly #issuer: string
  constructor(issuer: string, key: Buffer, ttlSeconds: number) {
    this.#issuer = issuer
    this.#cookie = new InteractionCookie(issuer, 'gatehouse-login')
    this.#key = key
    this.#ttl = ttlSeconds
  }

  /** After a sign-in as `accountId`, for as long as a session lasts. */
  set(res: ServerResponse, accountId: string) {
    this.#cookie.set(res, this.#mac(accountId), this.#ttl)
  }

  clear(res: ServerResponse) {
    this.#cookie.clear(res)
  }

  matches(req: IncomingMessage, accountId: string): boolean {
    return constantTimeEqual(this.#cookie.read(req) ?? '', this.#mac(accountId))
  }

  /**
   * At the authorization endpoint, before the provider reads the session: a session whose account this
   * browser's binding does not name is dropped from the request and cleared in the browser.
   */
  middleware(provider: Provider, authorizationPath: string, logger: AuthServerLogger): Middleware {
    const name = provider.cookieName('session')
    return async (ctx, next) => {
      if (ctx.path !== authorizationPath) return next()
      const id = ctx.cookies.get(name)
      const session = id ? await provider.Session.find(id) : undefined
      if (session?.accountId && !this.matches(ctx.req, session.accountId)) {
        logger.info('a browser session not bound to this browser was ignored: sign-in required', {
          accountId: session.accountId,
        })
        ctx.req.headers.cookie = withoutCookie(ctx.req.headers.cookie ?? '', name)
        ctx.cookies.set(name, null, providerCookies(this.#issuer, []).long)
      }
      return next()
    }
  }

  #mac(accountId: string): string {
    return createHmac('sha256', this.#key).update(`session binding\0${accountId}`).digest('base64url')
  }
}

/** The Cookie header without `name` and its signature `name.sig`. */
function withoutCookie(header: string, name: string): string {
  return header
    .split(';')
    .filter((part) => {
      const key = part.slice(0, part.indexOf('=')).trim()
      return key !== name && key !== `${name}.sig`
    })
    .join(';')
}
