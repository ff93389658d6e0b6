import type { DpopReplayStore } from './dpop.ts'
import { GuardError } from './errors.ts'
import type { VerifiedToken } from './identity.ts'
import type { KeySetOptions } from './jwks.ts'
import { DEFAULT_ALGORITHMS, isJwsAlgorithm, type JwsAlgorithm } from './lib/algorithms.ts'
import type { ScopeImplications, ScopeMode } from './scopes.ts'

export interface AuthorizationServerOptions {
  /** The issuer identifier, exactly as the provider publishes it (a trailing slash matters). */
  issuer: string
  /** Skips reading `jwks_uri` from discovery. Discovery still runs when introspection needs its endpoint. */
  jwksUri?: string
  /**
   * The issuer's JWKS document read in process, for an authorization server running beside the guard
   * (`gatehouse serve`): no discovery and no HTTP. Its keys get the same checks as fetched ones.
   */
  jwks?: () => Promise<unknown>
  /**
   * Accept JWTs with `typ: JWT` or no `typ` from this issuer whatever their (accepted) audience. Off by
   * default: RFC 9068 access tokens carry `typ: at+jwt`, and a plain JWT is then accepted only when its `aud`
   * names the resource itself, which an ID token's (the client_id) never does. Auth0, Keycloak, Okta and
   * Entra still issue `typ: JWT`; set this when their audience is an API identifier other than the resource.
   */
  acceptPlainJwt?: boolean
  /** Credentials for RFC 7662 introspection of opaque tokens; the endpoint defaults to the discovered one. */
  introspection?: { clientId: string; clientSecret: string; endpoint?: string }
}

export interface GuardLogger {
  warn(message: string, fields?: Record<string, unknown>): void
  info(message: string, fields?: Record<string, unknown>): void
}

export interface GuardOptions {
  /**
   * The canonical URL of the MCP endpoint, as clients address it (`https://mcp.example.com/mcp`). The one
   * source of truth: it is the PRM `resource`, it locates `resource_metadata`, and it is the default audience.
   */
  resource: string
  authorizationServers: readonly AuthorizationServerOptions[]
  /** Accepted `aud` values; default: the resource alone. */
  audiences?: readonly string[]
  /** Accept any audience. Insecure (tokens minted for other services are accepted); warned at start. */
  allowAnyAudience?: boolean
  /** Scopes every request needs. Default: none. */
  scopes?: readonly string[]
  /** How `scopes` combine; default `require_all`. */
  scopeMode?: ScopeMode
  /** Broader scopes that imply narrower ones, e.g. `{ 'files:write': ['files:read'] }`. */
  scopeImplications?: ScopeImplications
  /** PRM `scopes_supported`: the minimal set for basic use (MCP RS-7); default: `scopes`. */
  scopesSupported?: readonly string[]
  /** Allowed JWS algorithms; default RS256, PS256, ES256, EdDSA, Ed25519. Symmetric algorithms are never accepted. */
  algorithms?: readonly string[]
  /** Leeway for `exp`, `nbf`, `iat`; default 30 s. */
  clockSkewSeconds?: number
  /** Longest accepted `exp - iat`; default 24 h. */
  maxTokenLifetimeSeconds?: number
  /** Tokens longer than this are refused before any parsing; default 8192 bytes. */
  maxTokenBytes?: number
  resourceName?: string
  resourceDocumentation?: string
  /**
   * DPoP (RFC 9449): bound tokens are always checked; `required` refuses unbound ones. `replayCacheMaxEntries`
   * (default 100 000) bounds the proofs remembered for their lifetime: while it is full, new proofs are
   * refused (`dpop_replay_cache_full`) rather than a remembered one forgotten and made replayable.
   * `replayStore` replaces that in-memory cache, e.g. with one several instances share.
   */
  dpop?: {
    required?: boolean
    maxAgeSeconds?: number
    replayCacheMaxEntries?: number
    replayStore?: DpopReplayStore
  }
  /** Verified tokens are remembered (keyed by their SHA-256) for at most this long; default 60 s, 0 disables. */
  cacheSeconds?: number
  cacheMaxEntries?: number
  /** Timeout for discovery, JWKS and introspection requests; default 5000 ms. */
  timeoutMs?: number
  jwks?: Omit<KeySetOptions, 'onWarning' | 'timeoutMs'>
  logger?: GuardLogger
  /**
   * Called for every request whose token passed every other check (the verification cache does not skip it);
   * `true` refuses the token with `token_revoked`, a throw with `authorization_server_unavailable` (503). For
   * an authorization server that can revoke JWT access tokens before they expire (the embedded one does). It
   * runs on every request: answer from memory (a cache of a few seconds) wherever possible.
   */
  isRevoked?: (token: VerifiedToken) => boolean | Promise<boolean>
}

export type ResolvedGuardOptions = Required<
  Omit<GuardOptions, 'resourceName' | 'resourceDocumentation' | 'jwks' | 'logger' | 'dpop' | 'isRevoked'>
> & {
  algorithms: readonly JwsAlgorithm[]
  resourceName: string | undefined
  resourceDocumentation: string | undefined
  jwks: GuardOptions['jwks']
  logger: GuardLogger
  dpop: {
    required: boolean
    maxAgeSeconds: number
    replayCacheMaxEntries: number
    replayStore: DpopReplayStore | undefined
  }
  isRevoked: GuardOptions['isRevoked']
}

const fail = (message: string): never => {
  throw new GuardError('config_invalid', message)
}

/** Validates the options once, at start, with messages that name the setting and the value. */
export function resolveGuardOptions(options: GuardOptions): ResolvedGuardOptions {
  if (typeof options !== 'object' || options === null) fail('options must be an object')
  const resource = checkResource(options.resource)
  if (!Array.isArray(options.authorizationServers) || options.authorizationServers.length === 0) {
    fail(
      'at least one authorization server is required (OAUTH_ISSUER_URL, or transport.auth.servers in the YAML file)',
    )
  }
  const issuers = new Set<string>()
  for (const server of options.authorizationServers) {
    checkHttpUrl(server?.issuer, 'authorization server issuer')
    if (issuers.has(server.issuer)) fail(`authorization server ${server.issuer} is listed twice`)
    issuers.add(server.issuer)
    if (server.jwksUri !== undefined) checkHttpUrl(server.jwksUri, `jwksUri of ${server.issuer}`)
    const introspection = server.introspection
    if (
      introspection !== undefined &&
      (typeof introspection.clientId !== 'string' ||
        !introspection.clientId ||
        typeof introspection.clientSecret !== 'string' ||
        !introspection.clientSecret)
    ) {
      fail(`introspection for ${server.issuer} needs a clientId and a clientSecret`)
    }
  }
  const algorithms = (options.algorithms ?? DEFAULT_ALGORITHMS).map((alg) =>
    isJwsAlgorithm(alg)
      ? alg
      : fail(
          `algorithm ${JSON.stringify(alg)} is not supported; use asymmetric ones such as RS256, ES256, EdDSA`,
        ),
  )
  if (algorithms.length === 0) fail('algorithms must not be empty')
  const scopes = stringList(options.scopes ?? [], 'scopes')
  const scopeMode = options.scopeMode ?? 'require_all'
  if (!['require_all', 'require_any', 'disabled'].includes(scopeMode)) {
    fail(`scope_mode ${JSON.stringify(scopeMode)} must be one of require_all, require_any, disabled`)
  }
  const audiences = stringList(options.audiences ?? [resource], 'audiences')
  if (audiences.length === 0 && !options.allowAnyAudience) {
    fail('audiences is empty: list the audiences to accept, or set allow_any_audience: true (insecure)')
  }
  if (options.isRevoked !== undefined && typeof options.isRevoked !== 'function') {
    fail('isRevoked must be a function (token) => boolean')
  }
  return {
    resource,
    authorizationServers: options.authorizationServers,
    audiences,
    allowAnyAudience: options.allowAnyAudience === true,
    scopes,
    scopeMode,
    scopeImplications: options.scopeImplications ?? {},
    scopesSupported: stringList(options.scopesSupported ?? scopes, 'scopes_supported'),
    algorithms,
    clockSkewSeconds: nonNegative(options.clockSkewSeconds ?? 30, 'clockSkewSeconds'),
    maxTokenLifetimeSeconds: nonNegative(
      options.maxTokenLifetimeSeconds ?? 86_400,
      'maxTokenLifetimeSeconds',
    ),
    maxTokenBytes: nonNegative(options.maxTokenBytes ?? 8192, 'maxTokenBytes'),
    resourceName: options.resourceName,
    resourceDocumentation:
      options.resourceDocumentation === undefined
        ? undefined
        : checkHttpUrl(options.resourceDocumentation, 'resource_documentation'),
    dpop: {
      required: options.dpop?.required === true,
      maxAgeSeconds: nonNegative(options.dpop?.maxAgeSeconds ?? 300, 'dpop.maxAgeSeconds'),
      replayCacheMaxEntries: nonNegative(
        options.dpop?.replayCacheMaxEntries ?? 100_000,
        'dpop.replayCacheMaxEntries',
      ),
      replayStore: checkReplayStore(options.dpop?.replayStore),
    },
    cacheSeconds: nonNegative(options.cacheSeconds ?? 60, 'cacheSeconds'),
    cacheMaxEntries: nonNegative(options.cacheMaxEntries ?? 10_000, 'cacheMaxEntries'),
    timeoutMs: nonNegative(options.timeoutMs ?? 5000, 'timeoutMs'),
    jwks: options.jwks,
    logger: options.logger ?? consoleLogger,
    isRevoked: options.isRevoked,
  }
}

function checkReplayStore(store: DpopReplayStore | undefined): DpopReplayStore | undefined {
  if (store !== undefined && typeof store?.add !== 'function')
    fail('dpop.replayStore must have an add method')
  return store
}

function checkResource(value: unknown): string {
  const url = checkHttpUrl(value, 'resource (the canonical MCP URL)')
  const parsed = new URL(url)
  if (parsed.hash || url.includes('#')) fail(`resource ${url} must not have a fragment (RFC 9728 §2)`)
  if (parsed.search) fail(`resource ${url} must not have a query`)
  if (url.endsWith('/') && parsed.pathname !== '/') {
    fail(`resource ${url} ends with a slash; MCP asks for the form without it: ${url.replace(/\/+$/, '')}`)
  }
  return url
}

function checkHttpUrl(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') return fail(`${what} is required`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return fail(`${what} ${JSON.stringify(value)} is not a URL`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') fail(`${what} ${value} must be an https URL`)
  return value
}

function stringList(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((s) => typeof s === 'string' && s !== '')) {
    return fail(`${what} must be a list of non-empty strings`)
  }
  return [...value]
}

function nonNegative(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    return fail(`${what} must be a number of at least 0`)
  return value
}

const consoleLogger: GuardLogger = {
  warn: (message, fields) => console.warn(`[gatehouse] ${message}`, fields ?? ''),
  info: () => {},
}
