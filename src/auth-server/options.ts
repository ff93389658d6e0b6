import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { ClientMetadata } from 'oidc-provider'
import type { Store } from '../storage/store.ts'
import type { SigningAlgorithm } from './keys.ts'
import { checkUserScopes, type UserScopes, type UserScopesOptions } from './user_scopes.ts'

/** Handles one request under the interaction path; resolves true when it answered it. */
export type InteractionHandler = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>

export interface InteractionContext {
  issuer: string
  /** Every request whose path starts with this goes to the handler first: `<issuer path>/interaction/`. */
  interactionPath: string
  store: Store
  logger: AuthServerLogger
  /** What each user may be granted: consent grants only that. */
  userScopes: UserScopes
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
  clients?: readonly ClientMetadata[]
  /** Login and consent; default: the development handler that signs in a test user and approves everything. */
  interactions?: InteractionsFactory
  /**
   * Which scopes each user may hold (`everyone`, plus rules by username or upstream claim); consent, a
   * remembered grant and each refresh give only those. Default: every user may approve every scope.
   */
  userScopes?: UserScopesOptions
  /** Token requests per client address and window, shared by the instances of a store; default 300 per 60 s. */
  tokenRateLimit?: { limit: number; windowSeconds: number }
  registration?: {
    /** Default true. Dynamic client registration (RFC 7591), deprecated by MCP 2026-07-28 but used by 2025 clients. */
    enabled?: boolean
    /** Registrations per client IP and window; default 20 per 60 s. */
    rateLimit?: { limit: number; windowSeconds: number }
  }
  cimd?: {
    /** Default true. Client ID Metadata Documents. */
    enabled?: boolean
    /** Fetches per `client_id` and window (failures are not cached by the provider); default 10 per 60 s. */
    rateLimit?: { limit: number; windowSeconds: number }
    /**
     * TESTS ONLY, never in production: `host:port`s whose documents are fetched past the SSRF guard (loopback
     * included), trusting `ca` instead of the system CAs. Logged as a warning at start.
     */
    unsafeAllowHosts?: readonly string[]
    ca?: string
  }
  /** Trust `X-Forwarded-*` (behind a TLS-terminating proxy). Default false. */
  proxy?: boolean
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
  clients: ClientMetadata[]
  interactions: InteractionsFactory | undefined
  userScopes: UserScopesOptions | undefined
  tokenRateLimit: { limit: number; windowSeconds: number }
  registration: { enabled: boolean; rateLimit: { limit: number; windowSeconds: number } }
  cimd: {
    enabled: boolean
    rateLimit: { limit: number; windowSeconds: number }
    unsafeAllowHosts: readonly string[]
    ca: string | undefined
  }
  proxy: boolean
  logger: AuthServerLogger
}

const DAY = 86_400
const ALGORITHMS: readonly SigningAlgorithm[] = ['ES256', 'EdDSA', 'RS256']

const fail = (message: string): never => {
  throw new TypeError(`authorization server: ${message}`)
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
  const ttl = {
    accessToken: 600,
    authorizationCode: 60,
    refreshToken: 14 * DAY,
    session: 14 * DAY,
    grant: 14 * DAY,
    interaction: 3600,
    idToken: 600,
    registeredClient: 30 * DAY,
    ...options.ttl,
  }
  for (const [name, value] of Object.entries(ttl)) {
    if (!Number.isInteger(value) || value <= 0) fail(`ttl.${name} must be a whole number of seconds above 0`)
  }
  if (ttl.accessToken > 3600) {
    options.logger?.warn('ttl.accessToken is above one hour: JWT access tokens cannot be revoked', {
      accessToken: ttl.accessToken,
    })
  }
  return {
    issuer,
    issuerPath,
    store: options.store,
    resources,
    defaultResource: resources.find((r) => r.default)?.url,
    secret: options.secret,
    signingAlgorithm,
    ttl,
    clients: (options.clients ?? []).map(staticClient),
    interactions: options.interactions,
    userScopes:
      options.userScopes &&
      checkUserScopes(options.userScopes, [
        ...new Set(['openid', 'offline_access', ...resources.flatMap((r) => r.scopes)]),
      ]),
    tokenRateLimit: checkRate(options.tokenRateLimit ?? { limit: 300, windowSeconds: 60 }, 'tokenRateLimit'),
    registration: {
      enabled: options.registration?.enabled ?? true,
      rateLimit: checkRate(
        options.registration?.rateLimit ?? { limit: 20, windowSeconds: 60 },
        'registration.rateLimit',
      ),
    },
    cimd: {
      enabled: options.cimd?.enabled ?? true,
      rateLimit: checkRate(options.cimd?.rateLimit ?? { limit: 10, windowSeconds: 60 }, 'cimd.rateLimit'),
      unsafeAllowHosts: options.cimd?.unsafeAllowHosts ?? [],
      ca: options.cimd?.ca,
    },
    proxy: options.proxy === true,
    logger: options.logger ?? consoleLogger,
  }
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

function checkRate(value: { limit: number; windowSeconds: number }, what: string) {
  if (
    !(
      Number.isInteger(value?.limit) &&
      value.limit > 0 &&
      Number.isInteger(value.windowSeconds) &&
      value.windowSeconds > 0
    )
  ) {
    fail(`${what} must be { limit, windowSeconds } with whole numbers above 0`)
  }
  return value
}

function staticClient(client: ClientMetadata): ClientMetadata {
  if (typeof client?.client_id !== 'string' || client.client_id === '')
    fail('each static client needs a client_id')
  if (client.client_id.startsWith('https://')) {
    fail(
      `static client_id ${client.client_id} must not be an https URL: those are Client ID Metadata Documents`,
    )
  }
  if (client.client_secret && !client.token_endpoint_auth_method) {
    return { ...client, token_endpoint_auth_method: 'client_secret_basic' }
  }
  return { ...client }
}

const consoleLogger: AuthServerLogger = {
  warn: (message, fields) => console.warn(`[gatehouse auth] ${message}`, fields ?? ''),
  info: () => {},
}
