import { formatChallenge } from './challenge.ts'
import { discoverAuthorizationServer } from './discovery.ts'
import { type DpopReplayStore, verifyDpopProof } from './dpop.ts'
import { GuardError } from './errors.ts'
import type { VerifiedToken } from './identity.ts'
import { type IntrospectionClient, introspect } from './introspection.ts'
import { RemoteKeySet } from './jwks.ts'
import { normalizeAudience } from './lib/claims.ts'
import { looksLikeJws } from './lib/compact.ts'
import { assertSecureUrl } from './lib/http.ts'
import {
  type GuardRequest,
  hasQueryParameter,
  headerValue,
  headOf,
  normalizedPath,
  type RequestHead,
} from './lib/request_head.ts'
import { ReplayCache, TtlCache } from './lib/ttl_cache.ts'
import { resourceMetadataDocument, resourceMetadataPaths, resourceMetadataUrl } from './metadata.ts'
import { type GuardOptions, type ResolvedGuardOptions, resolveGuardOptions } from './options.ts'
import { expandScopes, missingScopes, stepUpScopes } from './scopes.ts'
import { type JwtPolicy, type TrustedIssuer, verifyJwtAccessToken } from './verify_jwt.ts'

export type GuardResult =
  | { ok: true; token: VerifiedToken }
  | { ok: false; error: GuardError; response: Response }

export interface CheckOptions {
  /** Scopes this operation needs on top of the guard's `scopes`, e.g. a tool's own. */
  scopes?: readonly string[]
}

const DPOP_ALGORITHMS = ['ES256', 'EdDSA', 'PS256', 'RS256'] as const

const OPAQUE_DETAIL =
  'the provider issued an opaque (not JWT) access token: tell the provider the API identifier so that it ' +
  'issues a JWT for it (Auth0: the audience parameter, or a default audience on the tenant; then OAUTH_AUDIENCE ' +
  'set to that identifier), or configure introspection for the authorization server'

/**
 * The resource-server side of MCP authorization. Built by {@link createGuard}, which discovers every
 * trusted authorization server and loads its keys before returning, so a guard that exists can verify.
 *
 * It reads a web-standard `Request` or, on Node, a {@link RequestHead} (method, target, header values: no
 * `Request` built per request), and answers with a web `Response`; the adapters in `adapters/` wrap it for
 * node:http, Express, Hono and the MCP SDK.
 */
export class Guard {
  readonly options: ResolvedGuardOptions
  /** The canonical MCP URL. */
  readonly resource: string
  /** Where the Protected Resource Metadata is served; the `resource_metadata` of every challenge. */
  readonly resourceMetadataUrl: string
  readonly resourceMetadata: Readonly<Record<string, unknown>>
  readonly #metadataPaths: Set<string>
  /** The resource's origin: a request's path is read on it, never on its Host header. */
  readonly #origin: string
  readonly #jwt: JwtPolicy
  readonly #introspection: IntrospectionClient | undefined
  /**
   * Verified tokens by {@link cacheKey}; a hit counts only when the whole token matches too. A key of a few
   * dozen characters is hashed far faster than the token it comes from (a new string on every request).
   */
  readonly #verified: TtlCache<VerifiedToken>
  /** Each token's scopes with their implications, expanded once. */
  readonly #granted = new WeakMap<VerifiedToken, ReadonlySet<string>>()
  readonly #dpopReplay: DpopReplayStore

  /** @internal Use {@link createGuard}. */
  constructor(
    options: ResolvedGuardOptions,
    issuers: Map<string, TrustedIssuer>,
    introspection: IntrospectionClient | undefined,
  ) {
    this.options = options
    this.resource = options.resource
    this.resourceMetadataUrl = resourceMetadataUrl(options.resource)
    this.#metadataPaths = resourceMetadataPaths(options.resource)
    this.#origin = new URL(options.resource).origin
    this.resourceMetadata = Object.freeze(
      resourceMetadataDocument({
        resource: options.resource,
        authorizationServers: [...issuers.keys()],
        scopesSupported: options.scopesSupported,
        resourceName: options.resourceName,
        resourceDocumentation: options.resourceDocumentation,
        dpopAlgorithms: DPOP_ALGORITHMS,
        dpopRequired: options.dpop.required,
      }),
    )
    this.#jwt = {
      issuers,
      resource: normalizeAudience(options.resource),
      audiences: options.allowAnyAudience ? undefined : new Set(options.audiences.map(normalizeAudience)),
      algorithms: new Set(options.algorithms),
      clockSkewSeconds: options.clockSkewSeconds,
      maxLifetimeSeconds: options.maxTokenLifetimeSeconds,
      maxTokenBytes: options.maxTokenBytes,
    }
    this.#introspection = introspection
    this.#verified = new TtlCache(options.cacheSeconds > 0 ? options.cacheMaxEntries : 0)
    this.#dpopReplay = options.dpop.replayStore ?? new ReplayCache(options.dpop.replayCacheMaxEntries)
  }

  /**
   * Checks a request: the token's syntax, signature and claims (or introspection), its DPoP binding, and
   * the scopes. Never throws for bad input: a failure comes back with the challenge response to send.
   */
  async check(request: GuardRequest, options: CheckOptions = {}): Promise<GuardResult> {
    const head = headOf(request)
    const cached = this.#cachedBearer(head)
    const result = cached ? { ok: true as const, token: cached } : await this.checkToken(head)
    return result.ok ? this.checkScopes(head, result.token, options) : result
  }

  /**
   * The first half of {@link check}, for a caller that learns the scopes an operation needs only after the
   * token is known valid (from a request body it will not read for unknown callers): the token and its
   * DPoP binding, no scopes.
   */
  async checkToken(request: GuardRequest): Promise<GuardResult> {
    const head = headOf(request)
    const cached = this.#cachedBearer(head)
    if (cached) return { ok: true, token: cached }
    try {
      return { ok: true, token: await this.#authenticate(head) }
    } catch (error) {
      if (!(error instanceof GuardError)) throw error
      return this.#reject(error, head)
    }
  }

  /**
   * The second half of {@link check}: the guard's `scopes` plus `options.scopes` on a token from
   * {@link checkToken}, refused with the same 403 `insufficient_scope` challenge `check` sends.
   */
  checkScopes(request: GuardRequest, token: VerifiedToken, options: CheckOptions = {}): GuardResult {
    const required = options.scopes ? [...this.options.scopes, ...options.scopes] : this.options.scopes
    const missing = this.#missing(token, required)
    if (missing.length > 0) {
      const error = new GuardError(
        'insufficient_scope',
        `missing ${missing.join(' ')} for ${token.subject ?? token.clientId ?? 'the caller'}`,
      )
      return this.#reject(
        error,
        headOf(request),
        token,
        stepUpScopes(token.scopes, required, this.options.scopesSupported),
      )
    }
    return { ok: true, token }
  }

  /** Authenticates a request and returns the verified token, or throws a {@link GuardError}. No scope checks. */
  authenticate(request: GuardRequest): Promise<VerifiedToken> {
    return this.#authenticate(headOf(request))
  }

  /** Whether the token holds `scopes` under the guard's scope mode and implications, as `check` decides. */
  allows(token: VerifiedToken, scopes: readonly string[]): boolean {
    return this.#missing(token, scopes).length === 0
  }

  /** Verifies a bare access token (JWT or, through introspection, opaque). Results are cached. */
  async verifyToken(token: string): Promise<VerifiedToken> {
    return this.#verify(token)
  }

  /**
   * The token of a request whose exact Bearer credentials passed every check before and are still cached:
   * no parsing, no crypto. Only a JWT qualifies (its compact syntax is stricter than the header's token68);
   * DPoP, a revocation hook and a query string to inspect all take the full path.
   */
  #cachedBearer(head: RequestHead): VerifiedToken | undefined {
    if (this.options.isRevoked || this.options.dpop.required || this.options.cacheSeconds === 0)
      return undefined
    const header = head.headers.authorization
    if (typeof header !== 'string' || !header.startsWith('Bearer ') || head.url.includes('?'))
      return undefined
    const token = this.#verified.get(cacheKey(header))
    return token?.token === header.slice(7) && token.via === 'jwt' && token.dpopJkt === undefined
      ? token
      : undefined
  }

  async #authenticate(head: RequestHead): Promise<VerifiedToken> {
    const { scheme, token } = extractToken(head)
    const verified = await this.#verify(token)
    if (verified.dpopJkt !== undefined || scheme === 'DPoP') await this.#checkDpop(head, scheme, verified)
    else if (this.options.dpop.required)
      throw new GuardError('dpop_binding_mismatch', 'this resource requires DPoP-bound tokens')
    return verified
  }

  /** Synchronous for a cached token or a JWT whose key is loaded; throws or rejects with a {@link GuardError}. */
  #verify(token: string): VerifiedToken | Promise<VerifiedToken> {
    const { maxTokenBytes, cacheSeconds } = this.options
    if (token.length > maxTokenBytes)
      throw new GuardError('token_too_large', `${token.length} bytes, limit ${maxTokenBytes}`)
    const nowMs = Date.now()
    const cached = cacheSeconds > 0 ? this.#verified.get(cacheKey(token), nowMs) : undefined
    if (cached?.token === token) return this.#unlessRevoked(cached)
    const now = Math.floor(nowMs / 1000)
    const remember = (verified: VerifiedToken) => {
      if (cacheSeconds > 0) {
        const until = Math.min(
          (verified.expiresAt ?? Number.POSITIVE_INFINITY) * 1000,
          nowMs + cacheSeconds * 1000,
        )
        this.#verified.set(cacheKey(token), verified, until)
      }
      return this.#unlessRevoked(verified)
    }
    if (!looksLikeJws(token)) return this.#introspect(token, now).then(remember)
    const verified = verifyJwtAccessToken(token, this.#jwt, now)
    return verified instanceof Promise ? verified.then(remember) : remember(verified)
  }

  #missing(token: VerifiedToken, required: readonly string[]): string[] {
    if (required.length === 0 || this.options.scopeMode === 'disabled') return []
    let granted = this.#granted.get(token)
    if (!granted) {
      granted = expandScopes(token.scopes, this.options.scopeImplications)
      this.#granted.set(token, granted)
    }
    return missingScopes(granted, required, this.options.scopeMode)
  }

  /** The `isRevoked` check runs on every use of a token, cached or not; a failing check refuses (fail closed). */
  #unlessRevoked(token: VerifiedToken): VerifiedToken | Promise<VerifiedToken> {
    const { isRevoked } = this.options
    return isRevoked ? this.#askRevoked(token, isRevoked) : token
  }

  async #askRevoked(
    token: VerifiedToken,
    isRevoked: (token: VerifiedToken) => boolean | Promise<boolean>,
  ): Promise<VerifiedToken> {
    let revoked: boolean
    try {
      revoked = await isRevoked(token)
    } catch (error) {
      throw new GuardError(
        'authorization_server_unavailable',
        `the revocation check failed: ${(error as Error).message}`,
        { cause: error },
      )
    }
    if (revoked)
      throw new GuardError('token_revoked', `a token of ${token.subject ?? token.clientId ?? 'unknown'}`)
    return token
  }

  /** The PRM response when the request is for one of its paths (with CORS), otherwise `undefined`. */
  metadataResponse(request: GuardRequest): Response | undefined {
    const head = headOf(request)
    // Every metadata path has "well-known" in it, and URL parsing never creates letters: most requests stop here.
    if (!head.url.includes('well-known')) return undefined
    if (!this.#metadataPaths.has(normalizedPath(this.#origin, head.url))) return undefined
    const cors = {
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, OPTIONS',
      'access-control-allow-headers': 'mcp-protocol-version, accept',
      'access-control-max-age': '86400',
    }
    if (head.method === 'OPTIONS') return new Response(null, { status: 204, headers: cors })
    if (head.method !== 'GET' && head.method !== 'HEAD') {
      return new Response(null, { status: 405, headers: { ...cors, allow: 'GET, HEAD, OPTIONS' } })
    }
    return Response.json(this.resourceMetadata, {
      headers: { ...cors, 'cache-control': 'public, max-age=300' },
    })
  }

  /** The 401/403/400/503 response for an error, with the `WWW-Authenticate` challenge where one applies. */
  errorResponse(
    error: GuardError,
    scopes: readonly string[] = this.options.scopes,
    request?: GuardRequest,
  ): Response {
    const headers = new Headers({
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'access-control-expose-headers': 'WWW-Authenticate',
    })
    if (error.status === 401 || error.status === 403) {
      const dpop =
        error.code.startsWith('dpop_') ||
        (request !== undefined && /^dpop /i.test(headerValue(headOf(request), 'authorization') ?? ''))
      headers.set(
        'www-authenticate',
        formatChallenge({
          scheme: dpop ? 'DPoP' : 'Bearer',
          resourceMetadata: this.resourceMetadataUrl,
          scopes,
          error: error.code === 'token_missing' ? undefined : error,
          algorithms: DPOP_ALGORITHMS,
        }),
      )
    }
    if (error.status === 503) headers.set('retry-after', '5')
    const body = error.oauthError
      ? { error: error.oauthError, error_description: error.publicDescription }
      : { error: 'unauthorized' }
    return new Response(JSON.stringify(body), { status: error.status, headers })
  }

  #reject(
    error: GuardError,
    head: RequestHead,
    token?: VerifiedToken,
    scopes?: string[],
  ): GuardResult & { ok: false } {
    // A request without a token is the first step of every client's discovery; anything else is worth a look.
    const level = error.code === 'token_missing' ? 'info' : 'warn'
    this.options.logger[level]('request refused', {
      code: error.code,
      detail: error.detail,
      method: head.method,
      path: normalizedPath(this.#origin, head.url),
      subject: token?.subject,
    })
    return { ok: false, error, response: this.errorResponse(error, scopes, head) }
  }

  async #introspect(token: string, now: number): Promise<VerifiedToken> {
    if (!this.#introspection) throw new GuardError('token_opaque', OPAQUE_DETAIL)
    return introspect(token, this.#introspection, this.#jwt.audiences, now)
  }

  async #checkDpop(head: RequestHead, scheme: string, token: VerifiedToken): Promise<void> {
    if (token.dpopJkt === undefined)
      throw new GuardError('dpop_binding_mismatch', 'an unbound token was sent with the DPoP scheme')
    if (scheme !== 'DPoP')
      throw new GuardError('dpop_binding_mismatch', 'a DPoP-bound token was sent as a Bearer token')
    const proofs = headerValue(head, 'dpop')
    if (!proofs || proofs.includes(','))
      throw new GuardError('dpop_proof_invalid', 'exactly one DPoP header is required')
    await verifyDpopProof(
      {
        proof: proofs.trim(),
        method: head.method,
        url: `${this.#origin}${normalizedPath(this.#origin, head.url)}`,
        accessToken: token.token,
        jkt: token.dpopJkt,
      },
      {
        algorithms: DPOP_ALGORITHMS,
        maxAgeSeconds: this.options.dpop.maxAgeSeconds,
        clockSkewSeconds: this.options.clockSkewSeconds,
        replay: this.#dpopReplay,
      },
      Math.floor(Date.now() / 1000),
    )
  }
}

/**
 * The cache key of a token: its last 32 characters, the end of the signature for a JWT (192 bits an issuer
 * chose at random or that only its key can produce). Two tokens sharing it only evict each other: a hit is
 * taken only when the whole token is the cached one.
 */
const cacheKey = (token: string): string => token.slice(-32)

/**
 * Reads the token from the one place OAuth 2.1 §5.1 allows for MCP: the Authorization header. A token in
 * the query string is refused outright rather than ignored, so a misbehaving client learns why.
 */
export function extractToken(request: GuardRequest): { scheme: 'Bearer' | 'DPoP'; token: string } {
  const head = headOf(request)
  if (hasQueryParameter(head.url, 'access_token')) throw new GuardError('token_in_query')
  const header = headerValue(head, 'authorization')
  if (header === undefined || header.trim() === '') throw new GuardError('token_missing')
  // Repeated fields are joined with ", ", as Headers does; a token never contains a comma.
  if (header.includes(',')) throw new GuardError('credentials_duplicated', 'several Authorization values')
  const match = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header)
  if (!match) {
    const scheme = header.split(' ', 1)[0] ?? ''
    if (/^(bearer|dpop)$/i.test(scheme))
      throw new GuardError('token_malformed', 'the credentials are not a token68 string')
    throw new GuardError('scheme_unsupported', `scheme ${JSON.stringify(scheme.slice(0, 20))}`)
  }
  const scheme = (match[1] as string).toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer'
  return { scheme, token: match[2] as string }
}

/**
 * Builds a guard: validates the options, discovers each authorization server and loads its JWKS. Throws a
 * {@link GuardError} (`config_invalid`, `discovery_failed` or `authorization_server_unavailable`) that
 * names the setting or URL at fault, so a server that cannot verify tokens never starts.
 */
export async function createGuard(options: GuardOptions): Promise<Guard> {
  const resolved = resolveGuardOptions(options)
  const { logger } = resolved
  if (resolved.allowAnyAudience) {
    logger.warn(
      'allow_any_audience is on: tokens issued for ANY audience, including other services, are accepted. ' +
        'This breaks the MCP rule that servers accept only tokens issued for them; list audiences instead.',
    )
  }
  const issuers = new Map<string, TrustedIssuer>()
  let introspection: IntrospectionClient | undefined
  for (const server of resolved.authorizationServers) {
    const metadata =
      (server.jwksUri || server.jwks) && !server.introspection
        ? undefined
        : await discoverAuthorizationServer(server.issuer, { timeoutMs: resolved.timeoutMs })
    const jwksUri = server.jwks ? `${server.issuer}#in-process-jwks` : (server.jwksUri ?? metadata?.jwks_uri)
    if (!jwksUri) {
      throw new GuardError(
        'discovery_failed',
        `the metadata of ${server.issuer} has no jwks_uri, so its tokens cannot be verified`,
      )
    }
    const keys = new RemoteKeySet(
      endpointUrl(jwksUri, `jwks_uri of ${server.issuer}`, metadata === undefined),
      {
        ...resolved.jwks,
        source: server.jwks,
        timeoutMs: resolved.timeoutMs,
        onWarning: (message) => logger.warn(message),
      },
    )
    await keys.load()
    issuers.set(server.issuer, {
      issuer: server.issuer,
      keys,
      acceptPlainJwt: server.acceptPlainJwt === true,
    })
    if (server.introspection && !introspection) {
      const endpoint = server.introspection.endpoint ?? metadata?.introspection_endpoint
      if (!endpoint) {
        throw new GuardError(
          'discovery_failed',
          `${server.issuer} publishes no introspection_endpoint; set introspection.endpoint`,
        )
      }
      const { clientId, clientSecret } = server.introspection
      introspection = {
        issuer: server.issuer,
        endpoint: endpointUrl(
          endpoint,
          `introspection endpoint of ${server.issuer}`,
          server.introspection.endpoint !== undefined,
        ),
        clientId,
        clientSecret,
        timeoutMs: resolved.timeoutMs,
      }
    }
  }
  return new Guard(resolved, issuers, introspection)
}

/**
 * A URL the guard will call, checked at start: configured ones are the operator's to fix, discovered ones
 * the provider's, and the error code says which.
 */
function endpointUrl(value: string, what: string, configured: boolean): URL {
  const code = configured ? 'config_invalid' : 'discovery_failed'
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new GuardError(code, `${what} ${JSON.stringify(value)} is not a URL`)
  }
  try {
    assertSecureUrl(url, what)
  } catch (cause) {
    throw new GuardError(code, (cause as Error).message)
  }
  return url
}
