import type { Configuration, KoaContextWithOIDC } from 'oidc-provider'
import { errors } from 'oidc-provider'
import type { PrivateJwk } from './keys.ts'
import type { ResolvedOptions } from './options.ts'

type ResourceIndicators = NonNullable<NonNullable<Configuration['features']>['resourceIndicators']>

/**
 * RFC 8707: every configured resource gets RFC 9068 JWT access tokens (`typ: at+jwt`) with `aud` equal to
 * its URL and the short access-token lifetime; anything else is `invalid_target`, as is a resource a machine
 * client (`client_credentials`) was not given.
 */
export function resourceIndicators(options: ResolvedOptions, signingKey: PrivateJwk): ResourceIndicators {
  const byUrl = new Map(options.resources.map((r) => [r.url, r]))
  return {
    enabled: true,
    defaultResource: (_ctx, _client, oneOf) => oneOf ?? options.defaultResource ?? '',
    useGrantedResource: () => true,
    getResourceServerInfo: (ctx, url, client) => {
      const resource = byUrl.get(url)
      if (!resource) throw new errors.InvalidTarget()
      // A client acting for itself gets tokens only for the resources the operator gave it.
      if (
        ctx.oidc.params?.grant_type === 'client_credentials' &&
        !options.declaredClients.get(client.clientId)?.machineResources.has(url)
      ) {
        throw new errors.InvalidTarget(`resource ${url} is not allowed for client ${client.clientId}`)
      }
      return {
        scope: resource.scopes.join(' '),
        audience: resource.url,
        accessTokenTTL: options.ttl.accessToken,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: signingKey.alg, kid: signingKey.kid } },
      }
    },
  }
}

/**
 * `oidc-provider` consumes a refresh token before it checks `resource`, so a bad `resource` would burn the
 * token and a retry would count as reuse and revoke the grant. This check runs at the rotation decision,
 * before anything is consumed.
 */
export function assertRefreshResource(ctx: KoaContextWithOIDC, options: ResolvedOptions) {
  const requested = ctx.oidc.params?.resource
  if (requested === undefined) return
  const refreshToken = ctx.oidc.entities.RefreshToken
  const granted = refreshToken?.resourceIndicators ?? new Set<string>()
  const values = Array.isArray(requested) ? requested : [requested]
  if (values.length !== 1) {
    throw new errors.InvalidTarget('only a single resource indicator value must be requested')
  }
  const value = values[0] as string
  if (!options.resources.some((r) => r.url === value) || !granted.has(value)) {
    throw new errors.InvalidTarget('the resource was not granted to this refresh token')
  }
}
