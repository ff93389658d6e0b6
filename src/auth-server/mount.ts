import type { IncomingMessage, ServerResponse } from 'node:http'
import type { InteractionHandler } from './options.ts'
import { refuseForeignOrigin } from './origin.ts'

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void
type ProviderRequest = IncomingMessage & { originalUrl?: string }

export const WELL_KNOWN = [
  '/.well-known/oauth-authorization-server',
  '/.well-known/openid-configuration',
] as const

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

/**
 * Routes a request of the shared origin to the provider when it belongs to the authorization server: every
 * path under the issuer's path, the path-inserted RFC 8414 and OIDC discovery URLs (`/.well-known/<suffix>
 * <issuer path>`), and the interaction pages (to the login and consent handler first). Anything else is left
 * to the host (false). A state-changing request from a browser origin not in `allowedOrigins` gets 403.
 */
export function createMount(
  issuerPath: string,
  interactionPath: string,
  interactions: InteractionHandler,
  callback: RequestListener,
  allowedOrigins: ReadonlySet<string>,
) {
  const routes: readonly string[] = Object.values(ROUTES)
  const wellKnown: readonly string[] = WELL_KNOWN
  const forward = (req: ProviderRequest, res: ServerResponse, providerUrl: string) => {
    if (refuseForeignOrigin(req, res, allowedOrigins)) return true
    req.originalUrl = req.url
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
      return refuseForeignOrigin(req, res, allowedOrigins) || interactions(req, res)
    }
    if (issuerPath === '') {
      const owned = wellKnown.includes(path) || routes.some((r) => path === r || path.startsWith(`${r}/`))
      if (!owned) return false
      if (!refuseForeignOrigin(req, res, allowedOrigins)) callback(req, res)
      return true
    }
    for (const suffix of WELL_KNOWN) {
      // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
      if (path === `${suffix}${issuerPath}`) {
        req.url = `${issuerPath}${suffix}${query}`
        return forward(req, res, `${suffix}${query}`)
      }
    }
    if (path === issuerPath || path.startsWith(`${issuerPath}/`)) {
      return forward(req, res, url.slice(issuerPath.length) || '/')
    }
    return false
  }
}
