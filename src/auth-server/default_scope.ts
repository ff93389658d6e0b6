import type Provider from 'oidc-provider'
import type { ResolvedOptions } from './options.ts'

type Middleware = Parameters<Provider['use']>[0]

/**
 * An authorization request without `scope` asks for the scopes of the resource it names (or of the default
 * resource). MCP clients omit `scope` when neither a challenge nor the PRM offers one (MCP "Scope Selection
 * Strategy"), and RFC 6749 §3.3 wants a default set rather than a grant of nothing, which oidc-provider would
 * turn into `access_denied`. Only GET requests are rewritten: that is how every MCP client authorizes.
 */
export function defaultScopeMiddleware(options: ResolvedOptions, route: string): Middleware {
  const scopesOf = new Map(options.resources.map((r) => [r.url, r.scopes.join(' ')]))
  return async (ctx, next) => {
    if (ctx.path === route && ctx.method === 'GET' && !ctx.query.scope) {
      const requested = ctx.query.resource
      const resource =
        typeof requested === 'string'
          ? requested
          : requested === undefined
            ? options.defaultResource
            : undefined
      const scope = resource === undefined ? undefined : scopesOf.get(resource)
      if (scope) {
        const before = ctx.url
        ctx.query = { ...ctx.query, scope }
        // oidc-provider finds its mount path (an issuer path such as /oauth) by locating the request URL
        // inside originalUrl, so the rewrite must reach both.
        const req = ctx.req as typeof ctx.req & { originalUrl?: string }
        if (req.originalUrl?.endsWith(before))
          req.originalUrl = `${req.originalUrl.slice(0, -before.length)}${ctx.url}`
      }
    }
    return next()
  }
}
