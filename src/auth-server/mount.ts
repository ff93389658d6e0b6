import type { IncomingMessage, ServerResponse } from 'node:http'
import type { InteractionHandler } from './options.ts'
import { refuseForeignOrigin } from './origin.ts'

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void
type ProviderRequest = IncomingMessage & { originalUrl?: string }

export const WELL_KNOWN = [
  '/.well-known/oauth-authorization-server',
  '/.well-known/openid-configuration',
] as const

/** Where the sign-in, consent and vault pages live, under the issuer's path. */
export const INTERACTION_PREFIX = '/interaction/'

/** The provider's routes, relative to the issuer; the MCP 2025-03-26 fallback paths for an origin issuer. */
export const ROUTES = {
  authorization: '/authorize',
  token: '/token',
  registration: '/register',
  jwks: '/jwks',
  revocation: '/revoke',
  introspection: '/introspect',
  userinfo: '/userinfo',
  end_session: '/logout',
  pushed_authorization_request: '/par',
} as const

/** The provider's own sub-paths of its routes, matched exactly too (the resume uid is a nanoid). */
const SUBROUTES = [
  new RegExp(`^${ROUTES.authorization}/[\\w-]+$`),
  new RegExp(`^${ROUTES.end_session}/(confirm|success)$`),
]

/**
 * The provider's router also serves `/TOKEN` and `/token/` (it folds case and drops one trailing slash), and
 * Gatehouse's checks (registration rules, rate limits) key on the exact route: so only the exact spellings
 * reach the provider, and every variant is left to the host (a 404 there).
 */
function isProviderPath(path: string): boolean {
  return (
    (Object.values(ROUTES) as string[]).includes(path) ||
    (WELL_KNOWN as readonly string[]).includes(path) ||
    SUBROUTES.some((route) => route.test(path))
  )
}

/**
 * Every URL the provider publishes (discovery, redirects, form actions) follows the request's host and
 * scheme; they must follow the issuer whatever the client sent and whether or not a proxy is trusted. The
 * provider trusts `X-Forwarded-*` (`provider.proxy`), and this sets them from the issuer.
 */
function pinToIssuer(req: IncomingMessage, issuer: URL) {
  req.headers.host = issuer.host
  req.headers['x-forwarded-host'] = issuer.host
  req.headers['x-forwarded-proto'] = issuer.protocol.slice(0, -1)
}

/**
 * Routes a request of the shared origin to the provider when it belongs to the authorization server: the
 * provider's routes under the issuer's path (exactly), the path-inserted RFC 8414 and OIDC discovery URLs
 * (`/.well-known/<suffix><issuer path>`), and the interaction pages (to the login and consent handler first).
 * Anything else is left to the host (false).
 */
export function createMount(
  issuer: string,
  interactionPath: string,
  interactions: InteractionHandler,
  callback: RequestListener,
  allowedOrigins: ReadonlySet<string>,
) {
  const issuerUrl = new URL(issuer)
  const issuerPath = issuerUrl.pathname.replace(/\/$/, '')
  const forward = (req: ProviderRequest, res: ServerResponse, originalUrl: string, providerUrl: string) => {
    if (refuseForeignOrigin(req, res, allowedOrigins)) return true
    pinToIssuer(req, issuerUrl)
    req.originalUrl = originalUrl
    req.url = providerUrl
    callback(req, res)
    return true
  }

  return (req: ProviderRequest, res: ServerResponse): boolean | Promise<boolean> => {
    const url = req.url ?? '/'
    const queryAt = url.indexOf('?')
    const path = queryAt === -1 ? url : url.slice(0, queryAt)
    const query = queryAt === -1 ? '' : url.slice(queryAt)
    if (path.startsWith(interactionPath)) {
      if (refuseForeignOrigin(req, res, allowedOrigins)) return true
      pinToIssuer(req, issuerUrl)
      return interactions(req, res)
    }
    for (const suffix of issuerPath === '' ? [] : WELL_KNOWN) {
      // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
      if (path === `${suffix}${issuerPath}`) {
        return forward(req, res, `${issuerPath}${suffix}${query}`, `${suffix}${query}`)
      }
    }
    if (!path.startsWith(`${issuerPath}/`) || !isProviderPath(path.slice(issuerPath.length))) return false
    return forward(req, res, url, url.slice(issuerPath.length))
  }
}
