import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { OidcAdapter } from '../../storage/store.ts'
import { AuthServerError, type PageErrorCode, pageError } from '../errors.ts'
import type { InternalSignIn } from '../internal_sign_in.ts'
import type { InteractionContext } from '../options.ts'
import type { RateLimit } from '../rate_limit.ts'
import { ACCOUNT_UNCONFIRMED } from '../revocation.ts'
import type { SessionBinding } from './binding.ts'
import { html, page, type SafeHtml } from './html.ts'
import type { IdentityProviderClient } from './identity_provider.ts'
import type { CsrfTokens, InteractionCookie } from './security.ts'
import type { SignInBackoff } from './throttle.ts'

export type Details = Awaited<ReturnType<Provider['interactionDetails']>>

/** What every handler of the sign-in and consent pages shares: built once per authorization server. */
export interface PagesContext extends InteractionContext {
  provider: Provider
  issuerUrl: URL
  binding: SessionBinding
  /** By provider id: the "Continue with <name>" buttons. */
  identityProviders: ReadonlyMap<string, IdentityProviderClient>
  /** Where a sign-in form's redirect chain may lead (the `form-action` of every page). */
  identityProviderOrigins: readonly string[]
  csrf: CsrfTokens
  /** Sign-ins gone to an identity provider, by their `state`, until the browser comes back. */
  pendingSignIns: OidcAdapter
  /** The `state` of this browser's sign-in at an identity provider. */
  stateCookie: InteractionCookie
  /** Connections gone to a vault provider, by their `state`, until the browser comes back. */
  vaultStates: OidcAdapter
  /** The `state` of this browser's connection at a vault provider. */
  vaultStateCookie: InteractionCookie
  /** The connect page's sign-in of a browser without a session, as its own client of this server. */
  connectSignIn: InternalSignIn
  signInBackoff: SignInBackoff
  localAccounts: boolean
  perAddress: RateLimit
}

/** One request to the pages: the path's parameters, then what the steps before the handler found. */
export interface Exchange {
  req: IncomingMessage
  res: ServerResponse
  params: Record<string, string>
}

/** A request inside an authorization: its interaction, and its form when it is a POST. */
export interface Interaction extends Exchange {
  details: Details
  form: URLSearchParams
}

/**
 * A page answers with this failure: thrown by a step or a handler, shown by the router. `extra` goes under the
 * error's text (a link to try again); `retryAfter` becomes the header of the same name.
 */
export class PageRefusal extends AuthServerError {
  readonly page: PageErrorCode
  readonly extra: SafeHtml | undefined
  readonly retryAfter: number | undefined

  constructor(code: PageErrorCode, extra?: SafeHtml, retryAfter?: number) {
    super(code)
    this.page = code
    this.extra = extra
    this.retryAfter = retryAfter
  }
}

export function sendFailure(res: ServerResponse, refusal: PageRefusal) {
  const { status, title, description } = pageError(refusal.page)
  if (refusal.retryAfter !== undefined) res.setHeader('retry-after', String(refusal.retryAfter))
  send(
    res,
    status,
    title,
    html`<p class="error" role="alert">${description}</p>${refusal.extra}<p><small>Error code: <code>${refusal.page}</code></small></p>`,
  )
}

export function send(res: ServerResponse, status: number, title: string, body: SafeHtml) {
  const text = page(title, body)
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}

export function redirect(res: ServerResponse, location: string) {
  res.writeHead(303, { location, 'content-length': 0 })
  res.end()
}

/** Only the confirmation of an existing session is asked for, not a new sign-in (max_age, prompt=login…). */
export const confirming = (details: Details) =>
  details.session !== undefined &&
  details.prompt.name === 'login' &&
  details.prompt.reasons.every((reason) => reason === ACCOUNT_UNCONFIRMED)

/** No account yet, or a new sign-in asked for. */
export const signingIn = (details: Details) => details.prompt.name === 'login' || !details.session

export const consenting = (details: Details) =>
  details.prompt.name === 'consent' && details.session !== undefined

export function now(): number {
  return Math.floor(Date.now() / 1000)
}
