import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { Store } from '../../storage/store.ts'

export { isLoopback as isLoopbackHost } from '../../guard/lib/http.ts'

/**
 * Headers of every interaction response, redirects included. `form-action` must list every origin a form's
 * redirect chain reaches (browsers check each hop): the upstream providers, and the client's redirect URI
 * once the last form of the interaction sends the browser back to it.
 */
export function setSecurityHeaders(res: ServerResponse, formTargets: readonly string[]) {
  setPageHeaders(
    res,
    `default-src 'none'; style-src 'unsafe-inline'; form-action 'self'${formTargets.map((t) => ` ${t}`).join('')}; frame-ancestors 'none'; base-uri 'none'`,
  )
}

/** The headers of every server-rendered page (sign-in, consent, console): `csp`, never framed or cached. */
export function setPageHeaders(res: ServerResponse, csp: string) {
  res.setHeader('content-security-policy', csp)
  res.setHeader('x-frame-options', 'DENY')
  res.setHeader('cache-control', 'no-store')
  // same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with the page's own form
  // posts, which the Origin check must refuse; other origins still get no referrer (the URL has the uid).
  res.setHeader('referrer-policy', 'same-origin')
  res.setHeader('x-content-type-options', 'nosniff')
}

/** A CSP source for a redirect URI: its origin, or its scheme for private-use schemes (`cursor:`). */
export function cspSource(uri: string): string | undefined {
  const url = URL.parse(uri)
  if (!url) return undefined
  if (url.protocol === 'http:' || url.protocol === 'https:') return url.origin
  return /^[a-z][a-z0-9+.-]*:$/.test(url.protocol) ? url.protocol : undefined
}

const isHttps = (issuer: string) => new URL(issuer).protocol === 'https:'

/**
 * The name of a cookie of the authorization server. On https it is `__Host-` (Secure, Path=/, no Domain: it
 * cannot be planted by a sibling subdomain nor by a plain-http page). `__Host-` requires `Secure`, which user
 * agents other than browsers refuse to send over plain http, so a loopback http issuer (development) uses the
 * bare name.
 */
export function cookieName(issuer: string, base: string): string {
  return isHttps(issuer) ? `__Host-${base}` : base
}

/**
 * oidc-provider's cookies (browser session, interaction, resume) under Gatehouse's names, each host-only on
 * Path=/ so that the `__Host-` prefix holds on https. The resume cookie's path is forced by the provider:
 * {@link rootPathCookies} sets it to `/`. So one browser runs one authorization at a time: starting another
 * replaces the first's cookies, and the first then ends on "Sign-in expired".
 */
export function providerCookies(issuer: string, keys: string[]) {
  const options = {
    httpOnly: true,
    sameSite: 'lax' as const,
    path: '/',
    ...(isHttps(issuer) ? { secure: true } : {}),
  }
  return {
    keys,
    names: {
      session: cookieName(issuer, 'gatehouse-session'),
      interaction: cookieName(issuer, 'gatehouse-interaction'),
      resume: cookieName(issuer, 'gatehouse-resume'),
    },
    long: options,
    short: { ...options },
  }
}

type Middleware = Parameters<Provider['use']>[0]

/** The provider sets its resume cookie on the resume URL's path; a `__Host-` cookie must be on `/`. */
export function rootPathCookies(provider: Provider): Middleware {
  const resume = provider.cookieName('resume')
  return (ctx, next) => {
    const cookies = ctx.cookies
    const set = cookies.set.bind(cookies)
    cookies.set = (name, value, options) =>
      set(name, value, name === resume ? { ...options, path: '/' } : options)
    return next()
  }
}

/** A cookie the interaction pages set, named by {@link cookieName}. */
export class InteractionCookie {
  readonly name: string
  readonly #secure: boolean
  readonly #sameSite: 'Lax' | 'Strict'
  /** `Strict` for a cookie no navigation from another site may carry (the admin console's session). */
  constructor(issuer: string, base: string, sameSite: 'Lax' | 'Strict' = 'Lax') {
    this.#secure = isHttps(issuer)
    this.name = cookieName(issuer, base)
    this.#sameSite = sameSite
  }

  set(res: ServerResponse, value: string, maxAgeSeconds: number) {
    const attributes = `Path=/; HttpOnly; SameSite=${this.#sameSite}${this.#secure ? '; Secure' : ''}`
    appendSetCookie(res, `${this.name}=${value}; ${attributes}; Max-Age=${maxAgeSeconds}`)
  }

  clear(res: ServerResponse) {
    this.set(res, '', 0)
  }

  read(req: IncomingMessage): string | undefined {
    return readCookie(req, this.name)
  }
}

/** The value of the request's cookie `name`, the first one when the header repeats it. */
export function readCookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=')
    if (at !== -1 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim()
  }
  return undefined
}

function appendSetCookie(res: ServerResponse, cookie: string) {
  const previous = res.getHeader('set-cookie')
  const list = previous === undefined ? [] : Array.isArray(previous) ? previous : [String(previous)]
  res.setHeader('set-cookie', [...list, cookie])
}

export function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

/**
 * One random CSRF token per interaction, kept server-side (shared by every instance on the store) for the
 * interaction's lifetime; every POST of that interaction must carry it.
 */
export class CsrfTokens {
  readonly #records
  constructor(store: Store) {
    this.#records = store.oidcAdapter('GatehouseCsrf')
  }

  async issue(uid: string, expiresIn: number): Promise<string> {
    const existing = await this.#records.find(uid)
    if (typeof existing?.token === 'string') return existing.token
    const token = randomBytes(32).toString('base64url')
    await this.#records.upsert(uid, { token }, Math.max(expiresIn, 1))
    return token
  }

  async check(uid: string, submitted: unknown): Promise<boolean> {
    if (typeof submitted !== 'string' || submitted === '') return false
    const record = await this.#records.find(uid)
    return typeof record?.token === 'string' && constantTimeEqual(record.token, submitted)
  }
}
