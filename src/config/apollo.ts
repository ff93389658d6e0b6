import type { AuthorizationServerOptions, GuardOptions } from '../guard/options.ts'
import type { ScopeMode } from '../guard/scopes.ts'
import { fail, only } from './errors.ts'

/**
 * The `transport.auth` block of a configuration file. Apollo MCP Server's keys are accepted as they are
 * (`servers`, `audiences`, `allow_any_audience`, `scopes`, `scope_mode`, `resource`,
 * `resource_documentation`, and its gateway switches), so a team moving from it keeps its file; the rest
 * are Gatehouse's own.
 */
const GUARD_KEYS = [
  'servers',
  'audiences',
  'allow_any_audience',
  'scopes',
  'scope_mode',
  'scope_implications',
  'scopes_supported',
  'resource',
  'resource_name',
  'resource_documentation',
  'algorithms',
  'clock_skew_seconds',
  'max_token_lifetime_seconds',
  'dpop_required',
] as const
/** Read by the gateway, not the guard; listed so they are not reported as unknown. */
const GATEWAY_KEYS = ['allow_anonymous_mcp_discovery', 'disable_auth_token_passthrough'] as const
const SERVER_KEYS = ['issuer', 'jwks_uri', 'accept_plain_jwt', 'introspection'] as const

/**
 * Guard options from an auth block. `resource` is the canonical MCP URL the gateway derived from its
 * public URL; the block's own `resource` replaces it, so there is still exactly one.
 */
export function guardOptionsFromAuthBlock(auth: unknown, resource: string): GuardOptions {
  const block = record(auth, 'transport.auth')
  rejectUnknown(block, [...GUARD_KEYS, ...GATEWAY_KEYS], 'transport.auth')
  const servers = block.servers
  if (!Array.isArray(servers) || servers.length === 0) {
    fail('transport.auth.servers must list at least one authorization server issuer URL')
  }
  const options: GuardOptions = {
    resource: optionalString(block.resource, 'transport.auth.resource') ?? resource,
    authorizationServers: (servers as unknown[]).map(serverOptions),
  }
  const set = <K extends keyof GuardOptions>(key: K, value: GuardOptions[K] | undefined) => {
    if (value !== undefined) options[key] = value
  }
  set('audiences', optionalStrings(block.audiences, 'transport.auth.audiences'))
  set('allowAnyAudience', optionalBoolean(block.allow_any_audience, 'transport.auth.allow_any_audience'))
  set('scopes', optionalStrings(block.scopes, 'transport.auth.scopes'))
  set('scopeMode', optionalString(block.scope_mode, 'transport.auth.scope_mode') as ScopeMode | undefined)
  set('scopesSupported', optionalStrings(block.scopes_supported, 'transport.auth.scopes_supported'))
  set('resourceName', optionalString(block.resource_name, 'transport.auth.resource_name'))
  set(
    'resourceDocumentation',
    optionalString(block.resource_documentation, 'transport.auth.resource_documentation'),
  )
  set('algorithms', optionalStrings(block.algorithms, 'transport.auth.algorithms'))
  set('clockSkewSeconds', optionalNumber(block.clock_skew_seconds, 'transport.auth.clock_skew_seconds'))
  set(
    'maxTokenLifetimeSeconds',
    optionalNumber(block.max_token_lifetime_seconds, 'transport.auth.max_token_lifetime_seconds'),
  )
  if (block.scope_implications !== undefined) {
    const implications = record(block.scope_implications, 'transport.auth.scope_implications')
    for (const [scope, implied] of Object.entries(implications)) {
      optionalStrings(implied, `transport.auth.scope_implications.${scope}`)
    }
    options.scopeImplications = implications as Record<string, string[]>
  }
  if (optionalBoolean(block.dpop_required, 'transport.auth.dpop_required')) options.dpop = { required: true }
  return options
}

function serverOptions(entry: unknown, index: number): AuthorizationServerOptions {
  const where = `transport.auth.servers[${index}]`
  if (typeof entry === 'string') return { issuer: entry }
  const server = record(entry, where)
  rejectUnknown(server, SERVER_KEYS, where)
  const issuer = optionalString(server.issuer, `${where}.issuer`) ?? fail(`${where}.issuer is required`)
  const options: AuthorizationServerOptions = { issuer }
  const jwksUri = optionalString(server.jwks_uri, `${where}.jwks_uri`)
  if (jwksUri !== undefined) options.jwksUri = jwksUri
  if (optionalBoolean(server.accept_plain_jwt, `${where}.accept_plain_jwt`)) options.acceptPlainJwt = true
  if (server.introspection !== undefined) {
    const i = record(server.introspection, `${where}.introspection`)
    rejectUnknown(i, ['client_id', 'client_secret', 'endpoint'], `${where}.introspection`)
    const endpoint = optionalString(i.endpoint, `${where}.introspection.endpoint`)
    options.introspection = {
      clientId:
        optionalString(i.client_id, `${where}.introspection.client_id`) ??
        fail(`${where}.introspection.client_id is required`),
      clientSecret:
        optionalString(i.client_secret, `${where}.introspection.client_secret`) ??
        fail(`${where}.introspection.client_secret is required`),
      ...(endpoint === undefined ? {} : { endpoint }),
    }
  }
  return options
}

function record(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return fail(`${where} must be a mapping`)
  return value as Record<string, unknown>
}

const rejectUnknown = (block: Record<string, unknown>, known: readonly string[], where: string): void =>
  only(block, known, where)

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null) return undefined
  return typeof value === 'string' && value !== '' ? value : fail(`${where} must be a non-empty string`)
}

function optionalStrings(value: unknown, where: string): string[] | undefined {
  if (value === undefined || value === null) return undefined
  if (!Array.isArray(value) || !value.every((s) => typeof s === 'string' && s !== '')) {
    return fail(`${where} must be a list of non-empty strings`)
  }
  return value
}

function optionalBoolean(value: unknown, where: string): boolean | undefined {
  if (value === undefined || value === null) return undefined
  return typeof value === 'boolean' ? value : fail(`${where} must be true or false`)
}

function optionalNumber(value: unknown, where: string): number | undefined {
  if (value === undefined || value === null) return undefined
  return typeof value === 'number' && Number.isFinite(value) ? value : fail(`${where} must be a number`)
}
