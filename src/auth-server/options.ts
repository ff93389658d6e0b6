import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { ClientMetadata } from 'oidc-provider'
import type { Store } from '../storage/store.ts'
import { consoleClient } from './console/sign_in.ts'
import { AuthServerError } from './errors.ts'
import { connectClient } from './interactions/connect_sign_in.ts'
import type { SigningAlgorithm } from './keys.ts'
import { checkRate, type RateLimit } from './rate_limit.ts'
import {
  resolveTokenExchange,
  type TokenExchangePolicy,
  type TokenExchangeRule,
  withExchangeGrant,
} from './token_exchange.ts'
import { checkUserScopes, type UserScopes, type UserScopesOptions } from './user_scopes.ts'
import type { TokenVault, TokenVaultOptions } from './vault/vault.ts'

/** Handles one request under the interaction path; resolves true when it answered it. */
export type InteractionHandler = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>

export interface InteractionContext {
  issuer: string
  /** Every request whose path starts with this goes to the handler first: `<issuer path>/interaction/`. */
  interactionPath: string
  store: Store
  logger: AuthServerLogger
  /** Requests come through the trusted proxy: count them against its last `X-Forwarded-For` entry. */
  trustProxy: boolean
  /** What each user may be granted: consent grants only that. */
  userScopes: UserScopes
  /** An HMAC key derived from the server secret, for the cookie that binds a browser session to its account. */
  sessionBindingKey: Buffer
  /** How long a browser session lasts (`ttl.session`), in seconds. */
  sessionTtl: number
  /** The token vault, when connections are configured: its pages are among the interaction pages. */
  vault: TokenVault | undefined
}

/** Login and consent, given the provider: finish with `provider.interactionFinished`. */
export type InteractionsFactory = (provider: Provider, context: InteractionContext) => InteractionHandler

export interface AuthServerLogger {
  warn(message: string, fields?: Record<string, unknown>): void
  info(message: string, fields?: Record<string, unknown>): void
}

export interface ProtectedResource {
  /** The canonical MCP URL; it becomes the tokens' `aud`, byte for byte. */
  url: string
  scopes: readonly string[]
  /** Bound when a client sends no `resource` (2025-03-26 clients); at most one resource may be the default. */
  default?: boolean
}

export interface AuthServerTtl {
  /** JWT access tokens (never stored, so not revocable): keep them short. Default 600 s. */
  accessToken?: number
  /** Default 60 s. */
  authorizationCode?: number
  /** Default 14 days; rotated tokens of native clients get a fresh lifetime. */
  refreshToken?: number
  /** Default 14 days. */
  session?: number
  /** Default 14 days. */
  grant?: number
  /** Default 1 h. */
  interaction?: number
  /** Default 600 s. */
  idToken?: number
  /** A dynamically registered client unused this long disappears; each use extends it. Default 30 days. */
  registeredClient?: number
  /** Upper bound of a token from token exchange; it never outlives its subject token. Default 300 s. */
  exchangedToken?: number
}

/**
 * A client the operator declares: RFC 7591 metadata, plus Gatehouse's own keys (removed before the provider
 * sees them). Only declared clients may use `client_credentials` (a machine client acting for itself).
 */
export interface StaticClient extends ClientMetadata {
  /**
   * With `client_credentials`: the resources its tokens may be for, each one of `resources` of the server;
   * default all of them. Such a client also needs `scope`: the only scopes its tokens may carry.
   */
  resources?: readonly string[]
  /** A resource server: introspection answers it for every token, not only its own. Needs a secret. */
  resource_server?: boolean
}

/** What Gatehouse keeps of a declared client for its own checks. */
export interface DeclaredClient {
  /** The resources its `client_credentials` tokens may be for; empty if it may not use that grant. */
  machineResources: ReadonlySet<string>
  /** Authenticates at the token endpoint (not `none`). */
  confidential: boolean
  resourceServer: boolean
}

export interface AuthorizationServerOptions {
  /** The issuer identifier, byte-exact: an origin (`https://host`) or with a path (`https://host/oauth`). */
  issuer: string
  store: Store
  /** The MCP resources tokens are issued for. */
  resources: readonly ProtectedResource[]
  /**
   * At least 32 characters of secret material: encrypts the signing keys at rest and signs cookies. Keep it
   * out of the store; losing it makes the stored keys unreadable.
   */
  secret: string
  /** The algorithm of the key generated on first start; default ES256. */
  signingAlgorithm?: SigningAlgorithm
  ttl?: AuthServerTtl
  /** Pre-registered clients (RFC 7591 metadata); a client with a `client_secret` defaults to `client_secret_basic`. */
  clients?: readonly StaticClient[]
  /** Login and consent; default: the development handler that signs in a test user and approves everything. */
  interactions?: InteractionsFactory
  /**
   * Which scopes each user may hold (`everyone`, plus rules by username or identity provider claim); consent, a
   * remembered grant and each refresh give only those. Default: every user may approve every scope.
   */
  userScopes?: UserScopesOptions
  /** Token requests per client address and window, shared by the instances of a store; default 300 per 60 s. */
  tokenRateLimit?: RateLimit
  /**
   * Seconds after a refresh during which the client may present the refresh token it just used again (its
   * answer was lost): it gets a fresh set that replaces the one it never received. Later, or once the new
   * refresh token was used, reuse revokes the grant. Default 30; 0 turns it off; at most 300.
   */
  refreshReuseIntervalSeconds?: number
  registration?: {
    /** Default true. Dynamic client registration (RFC 7591), deprecated by MCP 2026-07-28 but used by 2025 clients. */
    enabled?: boolean
    /**
     * Registrations per client address and window, a client metadata document's first fetch counting as one;
     * default 20 per 60 s.
     */
    rateLimit?: RateLimit
  }
  cimd?: {
    /** Default true. Client ID Metadata Documents. */
    enabled?: boolean
    /** Fetches per `client_id` and window (failures are not cached by the provider); default 10 per 60 s. */
    rateLimit?: RateLimit
    /**
     * TESTS ONLY, never in production: `host:port`s whose documents are fetched past the SSRF guard (loopback
     * included), trusting `ca` instead of the system CAs. Logged as a warning at start.
     */
    unsafeAllowHosts?: readonly string[]
    ca?: string
  }
  /**
   * Behind a trusted proxy: the client address (rate limits, sign-in) is the last `X-Forwarded-For` entry, the
   * one that proxy appended. Default false: the socket's peer. Published URLs follow the issuer either way.
   */
  proxy?: boolean
  /**
   * Browser origins, besides the issuer's, whose pages may call the state-changing endpoints (registration,
   * token, revocation, introspection, PAR, the sign-in pages, logout): e.g. a browser-based MCP client. A
   * request with another `Origin` gets 403; one without `Origin` (not from a browser) passes. Default none.
   */
  allowedOrigins?: readonly string[]
  /**
   * RFC 8693 token exchange: which declared confidential clients may exchange a user's MCP access token for
   * a short-lived JWT for a downstream API, with which scopes. Default none: the grant does not exist.
   */
  tokenExchange?: readonly TokenExchangeRule[]
  /**
   * The admin console under `<issuer path>/admin` (see `createConsole`): the usernames who may use it. None
   * (the default): no console, and no console client at the provider.
   */
  console?: { admins: readonly string[] }
  /**
   * The token vault: third-party OAuth providers users connect an account at (pages under the interaction
   * path), their tokens sealed in the store with `keys`. Default none.
   */
  vault?: TokenVaultOptions
  logger?: AuthServerLogger
}

export interface ResolvedOptions {
  issuer: string
  /** The issuer's path without a trailing slash; '' for an origin issuer. */
  issuerPath: string
  store: Store
  resources: readonly ProtectedResource[]
  defaultResource: string | undefined
  secret: string
  signingAlgorithm: SigningAlgorithm
  ttl: Required<AuthServerTtl>
  /** As the provider gets them: Gatehouse's keys removed. */
  clients: ClientMetadata[]
  declaredClients: ReadonlyMap<string, DeclaredClient>
  interactions: InteractionsFactory | undefined
  userScopes: UserScopesOptions | undefined
  tokenRateLimit: RateLimit
  refreshReuseIntervalSeconds: number
  registration: { enabled: boolean; rateLimit: RateLimit }
  cimd: {
    enabled: boolean
    rateLimit: RateLimit
    unsafeAllowHosts: readonly string[]
    ca: string | undefined
  }
  proxy: boolean
  /** The issuer's origin and `allowedOrigins`. */
  allowedOrigins: ReadonlySet<string>
  tokenExchange: TokenExchangePolicy
  /** Empty: the console is off. */
  consoleAdmins: readonly string[]
  /** The clients of Gatehouse's own pages (console, connect page) that are on: their sign-in asks no consent. */
  internalClientIds: ReadonlySet<string>
  logger: AuthServerLogger
}

const DAY = 86_400
const ALGORITHMS: readonly SigningAlgorithm[] = ['ES256', 'EdDSA', 'RS256']

const PREFIX = 'authorization server: '
const fail = (message: string): never => {
  throw new AuthServerError('options_invalid', `${PREFIX}${message}`)
}

/** Validates the options once, at start, with messages that name the setting, the value and the fix. */
export function resolveOptions(options: AuthorizationServerOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) fail('options must be an object')
  const issuer = checkIssuer(options.issuer)
  const issuerPath = new URL(issuer).pathname.replace(/\/$/, '')
  if (!options.store || typeof options.store.oidcAdapter !== 'function') {
    fail('store is required: openStore(url, { dataDir }) from src/storage')
  }
  if (typeof options.secret !== 'string' || options.secret.length < 32) {
    fail('secret must be a string of at least 32 characters (for example: openssl rand -base64 32)')
  }
  const resources = checkResources(options.resources)
  const signingAlgorithm = options.signingAlgorithm ?? 'ES256'
  if (!ALGORITHMS.includes(signingAlgorithm)) {
    fail(`signingAlgorithm ${JSON.stringify(signingAlgorithm)} must be one of ${ALGORITHMS.join(', ')}`)
  }
  const ttl = resolveTtl(options.ttl)
  if (ttl.accessToken > 3600) {
    options.logger?.warn('ttl.accessToken is above one hour: JWT access tokens cannot be revoked', {
      accessToken: ttl.accessToken,
    })
  }
  const declared = (options.clients ?? []).map((client) => staticClient(client, resources))
  const consoleAdmins = checkAdmins(options.console?.admins ?? [])
  // Gatehouse's own pages sign in as clients of this server: their ids are reserved while they are on.
  const internalClients = [
    ...(consoleAdmins.length ? [consoleClient(issuer)] : []),
    ...(options.vault?.connections.length ? [connectClient(issuer)] : []),
  ]
  for (const { client_id } of internalClients) {
    if (declared.some(({ metadata }) => metadata.client_id === client_id))
      fail(`client_id ${client_id} is Gatehouse's own: give the client another id`)
  }
  const tokenExchange = resolveTokenExchange(
    options.tokenExchange ?? [],
    new Map(declared.map(({ metadata, gatehouse }) => [metadata.client_id, gatehouse])),
    resources.map((r) => r.url),
  )
  return {
    issuer,
    issuerPath,
    store: options.store,
    resources,
    defaultResource: resources.find((r) => r.default)?.url,
    secret: options.secret,
    signingAlgorithm,
    ttl,
    clients: [
      ...declared.map(({ metadata }) => withExchangeGrant(metadata, tokenExchange)),
      ...internalClients,
    ],
    internalClientIds: new Set(internalClients.map(({ client_id }) => client_id)),
    consoleAdmins,
    declaredClients: new Map(declared.map(({ metadata, gatehouse }) => [metadata.client_id, gatehouse])),
    interactions: options.interactions,
    userScopes:
      options.userScopes &&
      checkUserScopes(options.userScopes, [
        ...new Set(['openid', 'offline_access', ...resources.flatMap((r) => r.scopes)]),
      ]),
    tokenRateLimit: checkRate(
      options.tokenRateLimit ?? { limit: 300, windowSeconds: 60 },
      `${PREFIX}tokenRateLimit`,
    ),
    refreshReuseIntervalSeconds: checkReuseInterval(options.refreshReuseIntervalSeconds ?? 30),
    registration: {
      enabled: options.registration?.enabled ?? true,
      rateLimit: checkRate(
        options.registration?.rateLimit ?? { limit: 20, windowSeconds: 60 },
        `${PREFIX}registration.rateLimit`,
      ),
    },
    cimd: {
      enabled: options.cimd?.enabled ?? true,
      rateLimit: checkRate(
        options.cimd?.rateLimit ?? { limit: 10, windowSeconds: 60 },
        `${PREFIX}cimd.rateLimit`,
      ),
      unsafeAllowHosts: options.cimd?.unsafeAllowHosts ?? [],
      ca: options.cimd?.ca,
    },
    proxy: options.proxy === true,
    allowedOrigins: new Set([new URL(issuer).origin, ...checkOrigins(options.allowedOrigins ?? [])]),
    tokenExchange,
    logger: options.logger ?? consoleLogger,
  }
}

function checkOrigins(value: readonly string[]): readonly string[] {
  if (!Array.isArray(value)) return fail('allowedOrigins must be a list of origins')
  for (const origin of value) {
    if (typeof origin !== 'string' || URL.parse(origin)?.origin !== origin) {
      fail(`allowedOrigins entry ${JSON.stringify(origin)} must be an origin such as https://app.example.com`)
    }
  }
  return value
}

/** The lifetimes with their defaults (see {@link AuthServerTtl}); shared with the admin commands. */
export function resolveTtl(given: AuthServerTtl = {}): Required<AuthServerTtl> {
  const ttl = {
    accessToken: 600,
    authorizationCode: 60,
    refreshToken: 14 * DAY,
    session: 14 * DAY,
    grant: 14 * DAY,
    interaction: 3600,
    idToken: 600,
    registeredClient: 30 * DAY,
    exchangedToken: 300,
    ...given,
  }
  for (const [name, value] of Object.entries(ttl)) {
    if (!Number.isInteger(value) || value <= 0) fail(`ttl.${name} must be a whole number of seconds above 0`)
  }
  return ttl
}

function checkIssuer(value: unknown): string {
  if (typeof value !== 'string' || value === '')
    return fail('issuer is required, e.g. https://mcp.example.com')
  const url = URL.parse(value)
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    return fail(`issuer ${JSON.stringify(value)} must be an https URL`)
  }
  if (url.search || url.hash || value.includes('#') || value.includes('?')) {
    fail(`issuer ${value} must have no query or fragment (RFC 8414 §2)`)
  }
  if (value.endsWith('/')) {
    fail(
      `issuer ${value} ends with a slash; clients compare it byte for byte: use ${value.replace(/\/+$/, '')}`,
    )
  }
  return value
}

function checkResources(value: unknown): ProtectedResource[] {
  if (!Array.isArray(value) || value.length === 0) {
    return fail('resources must list at least one MCP resource: [{ url: "https://host/mcp", scopes: [] }]')
  }
  const seen = new Set<string>()
  for (const resource of value as ProtectedResource[]) {
    const url = URL.parse(resource?.url ?? '')
    if (
      !url ||
      (url.protocol !== 'https:' && url.protocol !== 'http:') ||
      url.hash ||
      resource.url.includes('#')
    ) {
      fail(`resource ${JSON.stringify(resource?.url)} must be an absolute https URL without a fragment`)
    }
    if (seen.has(resource.url)) fail(`resource ${resource.url} is listed twice`)
    seen.add(resource.url)
    if (
      !Array.isArray(resource.scopes) ||
      !resource.scopes.every((s) => /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s))
    ) {
      fail(`scopes of ${resource.url} must be a list of scope tokens without spaces or quotes`)
    }
  }
  const defaults = (value as ProtectedResource[]).filter((r) => r.default)
  if (defaults.length > 1)
    fail(`only one resource may be the default; found ${defaults.map((r) => r.url).join(', ')}`)
  return value as ProtectedResource[]
}

/** Longer would let a stolen refresh token outrun reuse detection for longer; src/config/embedded.ts too. */
const MAX_REFRESH_REUSE_INTERVAL = 300

function checkReuseInterval(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_REFRESH_REUSE_INTERVAL) {
    fail(
      `refreshReuseIntervalSeconds ${JSON.stringify(value)} must be a whole number of seconds from 0 (off) to ${MAX_REFRESH_REUSE_INTERVAL}`,
    )
  }
  return value
}

function staticClient(client: StaticClient, resources: readonly ProtectedResource[]) {
  if (typeof client?.client_id !== 'string' || client.client_id === '')
    fail('each static client needs a client_id')
  const id = client.client_id
  if (id.startsWith('https://')) {
    fail(`static client_id ${id} must not be an https URL: those are Client ID Metadata Documents`)
  }
  const { resources: allowed, resource_server: resourceServer = false, ...metadata } = client
  if (metadata.client_secret && !metadata.token_endpoint_auth_method) {
    metadata.token_endpoint_auth_method = 'client_secret_basic'
  }
  const confidential = (metadata.token_endpoint_auth_method ?? 'none') !== 'none'
  if (typeof resourceServer !== 'boolean') fail(`client ${id}: resource_server must be true or false`)
  if (resourceServer && !confidential) {
    fail(`client ${id}: a resource_server must authenticate: give it a client_secret`)
  }
  const machineResources = metadata.grant_types?.includes('client_credentials')
    ? machineClientResources(metadata, confidential, allowed, resources)
    : new Set<string>()
  if (machineResources.size === 0 && allowed !== undefined) {
    fail(`client ${id}: resources applies to client_credentials clients only; remove it or add that grant`)
  }
  const declared: DeclaredClient = { machineResources, confidential, resourceServer }
  return { metadata, gatehouse: declared }
}

/** A machine client authenticates, names its scopes, and gets the resources it lists (default: all). */
function machineClientResources(
  metadata: ClientMetadata,
  confidential: boolean,
  allowed: readonly string[] | undefined,
  resources: readonly ProtectedResource[],
): Set<string> {
  const id = metadata.client_id
  if (!confidential)
    fail(`client ${id}: a client_credentials client must authenticate: give it a client_secret`)
  if (typeof metadata.scope !== 'string' || metadata.scope.trim() === '') {
    fail(
      `client ${id}: a client_credentials client needs scope, the only scopes its tokens may carry (e.g. scope: mcp)`,
    )
  }
  const known = resources.map((r) => r.url)
  if (allowed !== undefined && (!Array.isArray(allowed) || allowed.length === 0)) {
    fail(`client ${id}: resources must list at least one of ${known.join(', ')}`)
  }
  for (const url of allowed ?? []) {
    if (!known.includes(url))
      fail(`client ${id}: resource ${JSON.stringify(url)} is not one of ${known.join(', ')}`)
  }
  return new Set(allowed ?? known)
}

const consoleLogger: AuthServerLogger = {
  warn: (message, fields) => console.warn(`[gatehouse auth] ${message}`, fields ?? ''),
  info: () => {},
}

function checkAdmins(admins: readonly string[]): string[] {
  if (!Array.isArray(admins) || !admins.every((name) => typeof name === 'string' && name.trim() !== ''))
    fail('console.admins must be a list of usernames')
  return [...admins]
}
