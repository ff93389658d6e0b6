import { decodeJwt } from 'jose'
import type Provider from 'oidc-provider'
import { sendOAuthError } from './errors.ts'
import type { ResolvedOptions } from './options.ts'

type Middleware = Parameters<Provider['use']>[0]

/**
 * RP-initiated logout sends the browser on to `post_logout_redirect_uri`, with no click when no one is signed
 * in. A self-registered client (DCR, CIMD) could so make the server an open redirector to any site it names:
 * the redirect is honoured only for the clients the operator declared. The client is the one the provider
 * will use: `client_id`, else the audience of `id_token_hint` (the provider then checks its signature).
 */
export function logoutRedirectMiddleware(options: ResolvedOptions, route: string): Middleware {
  return async (ctx, next) => {
    const { post_logout_redirect_uri: redirect, client_id: clientId, id_token_hint: hint } = ctx.query
    if (ctx.path !== route || redirect === undefined) return next()
    const client = clientId ?? (typeof hint === 'string' ? audience(hint) : undefined)
    if (typeof client === 'string' && options.declaredClients.has(client)) return next()
    sendOAuthError(
      ctx,
      'logout_redirect_refused',
      `post_logout_redirect_uri is honoured only for clients declared in authorization_server.clients, not for ${JSON.stringify(client ?? null)}; log out without it`,
    )
  }
}

function audience(idToken: string): unknown {
  try {
    return decodeJwt(idToken).aud
  } catch {
    return undefined
  }
}
