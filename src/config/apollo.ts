import type { AuthorizationServerOptions, GuardOptions } from '../guard/options.ts'
import type { ScopeMode } from '../guard/scopes.ts'
import type { AuthBlock } from './schema.ts'

/**
 * The guard's options but its resource, which is the canonical MCP URL and is known only once the gateway
 * listens when no public URL is given: `guardOptionsFor` completes them.
 */
export type GuardSettings = Omit<GuardOptions, 'resource'> & {
  /** `transport.auth.resource`, which replaces the derived MCP URL so there is still exactly one. */
  resource: string | undefined
}

export const guardOptionsFor = (guard: GuardSettings, resource: string): GuardOptions => ({
  ...guard,
  resource: guard.resource ?? resource,
})

/**
 * The guard's settings from a validated `transport.auth` block (Apollo MCP Server's keys as they are,
 * see src/config/schema.ts). `authorizationServers` is the block's `servers`, or none when the embedded
 * authorization server issues the tokens: the gateway then trusts the one it starts, and only that one.
 */
export function guardSettings(block: AuthBlock): GuardSettings {
  const settings: GuardSettings = {
    resource: block.resource,
    authorizationServers: (block.servers ?? []).map((server) =>
      serverOptions(server, block.accept_plain_jwt),
    ),
  }
  const set = <K extends keyof GuardSettings>(key: K, value: GuardSettings[K] | undefined) => {
    if (value !== undefined) settings[key] = value
  }
  set('audiences', block.audiences)
  set('allowAnyAudience', block.allow_any_audience)
  set('scopes', block.scopes)
  set('scopeMode', block.scope_mode as ScopeMode | undefined)
  set('scopeImplications', block.scope_implications)
  set('scopesSupported', block.scopes_supported)
  set('resourceName', block.resource_name)
  set('resourceDocumentation', block.resource_documentation)
  set('algorithms', block.algorithms)
  set('clockSkewSeconds', block.clock_skew_seconds)
  set('maxTokenLifetimeSeconds', block.max_token_lifetime_seconds)
  if (block.dpop_required) settings.dpop = { required: true }
  return settings
}

/** One server of `transport.auth.servers`; its own `accept_plain_jwt` wins over the block's. */
function serverOptions(
  server: NonNullable<AuthBlock['servers']>[number],
  acceptPlainJwt: boolean | undefined,
): AuthorizationServerOptions {
  const { issuer, jwks_uri, accept_plain_jwt, introspection } = server
  return {
    issuer,
    ...(jwks_uri === undefined ? {} : { jwksUri: jwks_uri }),
    ...((accept_plain_jwt ?? acceptPlainJwt) ? { acceptPlainJwt: true } : {}),
    ...(introspection
      ? {
          introspection: {
            clientId: introspection.client_id,
            clientSecret: introspection.client_secret,
            ...(introspection.endpoint === undefined ? {} : { endpoint: introspection.endpoint }),
          },
        }
      : {}),
  }
}
