import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { ClientMetadata } from 'oidc-provider'
import type { Store } from '../../storage/store.ts'
import { html } from '../interactions/html.ts'
import { formOf } from '../interactions/router.ts'
import { InteractionCookie, setPageHeaders } from '../interactions/security.ts'
import { InternalSignIn } from '../internal_sign_in.ts'
import type { Rotation } from '../keys.ts'
import type { AuthServerLogger } from '../options.ts'
import type { TokenVault } from '../vault/vault.ts'
import {
  type ConsoleContext,
  type ConsoleExchange,
  ConsoleRefusal,
  sendPage,
  sendRefusal,
  type UpstreamHealth,
} from './context.ts'
import { HANDLERS } from './pages.ts'
import { AdminSessions, csrfMatches } from './session.ts'
import { consolePath, consoleSignInClient, finishSignIn } from './sign_in.ts'
import { CONSOLE_CSP } from './views.ts'

export type { UpstreamHealth } from './context.ts'
export { CONSOLE_CLIENT_ID, consoleClient } from './sign_in.ts'

/** Answers a request under the console's path; resolves false when the path is not the console's. */
export type ConsoleHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  health: UpstreamHealth,
) => boolean | Promise<boolean>

type Step = (context: ConsoleContext, exchange: ConsoleExchange) => Promise<void> | void

interface Route {
  method: 'GET' | 'POST'
  /** After the console's path, exactly: no trailing slash, no case folding, no decoding. */
  path: string
  steps: readonly Step[]
  handle: (context: ConsoleContext, exchange: ConsoleExchange) => Promise<void>
}

const FORM_LIMIT = 4 * 1024

/** A page needs a console session; without one a GET starts the sign-in and comes back to the page. */
const signedIn: Step = async (context, exchange) => {
  const session = await context.sessions.find(exchange.req)
  if (session) {
    exchange.session = session
    return
  }
  const path = (exchange.req.url ?? '').split('?')[0] as string
  await context.signIn.start(exchange.res, path)
  throw ANSWERED
}

/**
 * An action: the browser's `Origin` is the server's own (a form of another site, or no Origin, is refused),
 * the session exists (its cookie is SameSite=Strict), and the form carries the session's CSRF token.
 */
const action: Step = async (context, exchange) => {
  const { req } = exchange
  const sameOrigin = req.headers.origin === new URL(context.issuer).origin
  const fetchSite = req.headers['sec-fetch-site']
  if (!sameOrigin || (fetchSite !== undefined && fetchSite !== 'same-origin'))
    throw new ConsoleRefusal('console_csrf_invalid')
  const session = await context.sessions.find(req)
  if (!session) throw new ConsoleRefusal('console_csrf_invalid')
  const form = await formOf(req, FORM_LIMIT)
  if (!form || !csrfMatches(session, form.get('csrf'))) throw new ConsoleRefusal('console_csrf_invalid')
  exchange.session = session
  exchange.form = form
}

/** The handler already answered (a redirect to the sign-in). */
const ANSWERED = Symbol('answered')

const PAGE = [signedIn]
const ACTION = [action]

/** The console's routes; anything else under its path is `console_not_found`, another method 405. */
export const CONSOLE_ROUTES: readonly Route[] = [
  { method: 'GET', path: '', steps: PAGE, handle: HANDLERS.overview },
  { method: 'GET', path: '/clients', steps: PAGE, handle: HANDLERS.clients },
  { method: 'GET', path: '/users', steps: PAGE, handle: HANDLERS.users },
  { method: 'GET', path: '/grants', steps: PAGE, handle: HANDLERS.grants },
  { method: 'GET', path: '/keys', steps: PAGE, handle: HANDLERS.keys },
  { method: 'GET', path: '/audit', steps: PAGE, handle: HANDLERS.audit },
  { method: 'GET', path: '/connections', steps: PAGE, handle: HANDLERS.connections },
  { method: 'GET', path: '/health', steps: PAGE, handle: HANDLERS.health },
  { method: 'GET', path: '/callback', steps: [], handle: callback },
  { method: 'POST', path: '/grants/revoke', steps: ACTION, handle: HANDLERS.revokeGrant },
  { method: 'POST', path: '/keys/rotate', steps: ACTION, handle: HANDLERS.rotateKey },
  { method: 'POST', path: '/connections/revoke', steps: ACTION, handle: HANDLERS.revokeConnection },
  { method: 'POST', path: '/sign-out', steps: ACTION, handle: HANDLERS.signOut },
]

async function callback(context: ConsoleContext, { req, res }: ConsoleExchange) {
  const returnTo = await finishSignIn(context, req, res)
  // A page, not a redirect: after a sign-in at an identity provider the redirect chain started on another
  // site, and the browser would not send the new SameSite=Strict cookie with a redirect.
  sendPage(res, 200, {
    title: 'Signed in',
    refresh: returnTo,
    content: html`<p><a href="${returnTo}">Continue to the console</a></p>`,
  })
}

export interface ConsoleOptions {
  issuer: string
  provider: Provider
  store: Store
  logger: AuthServerLogger
  /** Usernames (`normalizeUsername`) who may use the console. */
  admins: readonly string[]
  staticClients: readonly ClientMetadata[]
  signingKid: string
  rotateKey(by: string): Promise<Rotation>
  vault: TokenVault | undefined
}

/**
 * The admin console under `<issuer path>/admin`: server-rendered pages behind a sign-in at this
 * authorization server, for the administrators named in the configuration. Pages are never cached, never
 * framed, run no script; every action is a POST checked by `action`.
 */
export function createConsole(options: ConsoleOptions): ConsoleHandler {
  const base = consolePath(options.issuer)
  const folded = base.toLowerCase()
  const context: ConsoleContext = {
    ...options,
    base,
    sessions: new AdminSessions(options.store, options.issuer, options.admins),
    signIn: new InternalSignIn({
      issuer: options.issuer,
      provider: options.provider,
      client: consoleSignInClient(options.issuer),
      pending: options.store.oidcAdapter('GatehouseConsoleSignIn'),
      stateCookie: new InteractionCookie(options.issuer, 'gatehouse-admin-signin'),
      prompt: 'login',
    }),
  }
  return async (req, res, health) => {
    const path = (req.url ?? '/').split('?')[0] as string
    if (!claims(path, folded)) return false
    setHeaders(res)
    try {
      const route = CONSOLE_ROUTES.find((candidate) => `${base}${candidate.path}` === path)
      if (!route) throw new ConsoleRefusal('console_not_found')
      if (req.method !== route.method) {
        res.setHeader('allow', route.method)
        throw new ConsoleRefusal('method_not_allowed')
      }
      const query = new URL(req.url ?? '/', options.issuer).searchParams
      const exchange = { req, res, query, health, form: new URLSearchParams() } as ConsoleExchange
      for (const step of route.steps) await step(context, exchange)
      await route.handle(context, exchange)
    } catch (error) {
      if (error === ANSWERED) return true
      if (error instanceof ConsoleRefusal && !res.headersSent) {
        sendRefusal(res, error)
        return true
      }
      options.logger.warn('console request failed', { error: (error as Error).message })
      if (!res.headersSent) sendRefusal(res, new ConsoleRefusal('server_error'))
      else res.end()
    }
    return true
  }
}

/**
 * The console owns every spelling of its path: `/admin`, `/ADMIN/`, `/%61dmin`, `/admin/../x`; a twin is
 * answered `console_not_found` here rather than by whatever else might match it.
 */
function claims(path: string, base: string): boolean {
  let decoded = path
  try {
    decoded = decodeURIComponent(path)
  } catch {
    // Not valid percent-encoding: compared as sent.
  }
  const folded = decoded.toLowerCase()
  return folded === base || folded.startsWith(`${base}/`) || folded.startsWith(`${base}\\`)
}

function setHeaders(res: ServerResponse) {
  setPageHeaders(res, CONSOLE_CSP)
  // The console opens no popup and is opened by none: no other window keeps a handle on it.
  res.setHeader('cross-origin-opener-policy', 'same-origin')
  res.setHeader('cross-origin-resource-policy', 'same-origin')
}
