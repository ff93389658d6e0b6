import * as oidc from 'openid-client'
import { unavailableAnswer } from '../../on-behalf-of/token_request.ts'
import { AuthServerError } from '../errors.ts'
import { isLoopbackHost } from '../interactions/security.ts'
import { Backoff } from './backoff.ts'

/**
 * A third-party OAuth 2 provider users connect an account at (GitHub, Google, Jira, …), as configured. Nothing
 * here knows a provider by name: its endpoints (or its issuer, for discovery), scopes and extra authorization
 * parameters say everything.
 */
export interface VaultConnectionOptions {
  /** In the connect and callback paths: `[a-z0-9-]`, stable (the redirect URI registered at the provider). */
  id: string
  /** Shown on the connections page. */
  name: string
  /** Discovery (RFC 8414 / OpenID Connect); or the endpoints below. */
  issuer?: string
  authorizationEndpoint?: string
  tokenEndpoint?: string
  /** RFC 7009 (with the endpoints; discovery gives it otherwise); without one, disconnecting only forgets the tokens. */
  revocationEndpoint?: string
  clientId: string
  clientSecret: string
  scopes: readonly string[]
  /** Added to the authorization request (`access_type: offline`, `prompt: consent`). */
  authorizationParams?: Readonly<Record<string, string>>
  /** The header the upstream gets: `{access_token}` in the value is replaced. Default `Authorization: Bearer {access_token}`. */
  header?: { name: string; value: string }
}

/** The tokens of a connection, as they are sealed. */
export interface VaultTokens {
  accessToken: string
  refreshToken: string | undefined
  /** Seconds since the epoch. */
  expiresAt: number | undefined
  scope: string | undefined
}

/** The provider refused the refresh token for good (`invalid_grant`): the connection is broken. */
export class RefreshRefused extends Error {}

/**
 * The provider was not reached, timed out or answered that it is unavailable (5xx, 429): refreshes through the connection pause for
 * `retryAfterSeconds` (see {@link ConnectionProvider.pausedSeconds}).
 */
export class ProviderUnavailable extends Error {
  readonly retryAfterSeconds: number

  constructor(message: string, retryAfterSeconds: number, options?: ErrorOptions) {
    super(message, options)
    this.retryAfterSeconds = retryAfterSeconds
  }
}

const CONNECTION_ID = /^[a-z0-9][a-z0-9-]{0,31}$/
const HEADER_NAME = /^[A-Za-z0-9-]{1,64}$/
/** Headers the gateway itself sets or forwards for the MCP exchange: a connection may not replace them. */
const RESERVED_HEADERS =
  /^(host|content-length|content-type|transfer-encoding|connection|accept|cookie|mcp-.*|x-gatehouse-.*)$/i
export const TOKEN_PLACEHOLDER = '{access_token}'
const TIMEOUT_SECONDS = 10

/** https, or http to this machine (a provider in a test or beside Gatehouse). */
function secureUrl(value: string | undefined): boolean {
  const url = URL.parse(value ?? '')
  return !!url && (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname)))
}

export function checkVaultConnections(connections: readonly VaultConnectionOptions[]): void {
  const seen = new Set<string>()
  for (const connection of connections) {
    const where = `vault connection ${JSON.stringify(connection.id)}`
    const refuse = (reason: string) => {
      throw new AuthServerError('vault_connection_invalid', `${where}: ${reason}`)
    }
    if (!CONNECTION_ID.test(connection.id)) refuse("id must be 1 to 32 of a-z, 0-9 and '-'")
    if (seen.has(connection.id)) refuse('is declared twice')
    seen.add(connection.id)
    const endpoints = [connection.authorizationEndpoint, connection.tokenEndpoint]
    if (connection.issuer === undefined) {
      if (endpoints.some((endpoint) => endpoint === undefined))
        refuse('give issuer (discovery) or both authorization_endpoint and token_endpoint')
    } else if ([...endpoints, connection.revocationEndpoint].some((endpoint) => endpoint !== undefined))
      refuse('give issuer (its discovery names the endpoints) or the endpoints, not both')
    for (const url of [connection.issuer, ...endpoints, connection.revocationEndpoint])
      if (url !== undefined && !secureUrl(url)) refuse(`${url} must be an https URL`)
    const header = connection.header
    if (header && (!HEADER_NAME.test(header.name) || !header.value.includes(TOKEN_PLACEHOLDER)))
      refuse(`header needs a name of A-Z a-z 0-9 - and a value containing ${TOKEN_PLACEHOLDER}`)
    if (header && RESERVED_HEADERS.test(header.name))
      refuse(`header ${header.name} is the MCP exchange's own; name another (Authorization, X-Api-Key, …)`)
  }
}

/**
 * One connection's provider through openid-client: discovery or the configured endpoints, authorization code
 * with PKCE S256 and `state` (RFC 9207 `iss` checked when the provider sends it), refresh and revocation.
 */
export class ConnectionProvider {
  readonly options: VaultConnectionOptions
  readonly redirectUri: string
  #configuration: Promise<oidc.Configuration> | undefined
  readonly #backoff = new Backoff()

  constructor(options: VaultConnectionOptions, redirectUri: string) {
    this.options = options
    this.redirectUri = redirectUri
  }

  /** The header the upstream gets for this connection. */
  header(accessToken: string): { name: string; value: string } {
    const { name, value } = this.options.header ?? {
      name: 'authorization',
      value: `Bearer ${TOKEN_PLACEHOLDER}`,
    }
    return { name: name.toLowerCase(), value: value.replaceAll(TOKEN_PLACEHOLDER, accessToken) }
  }

  configuration(): Promise<oidc.Configuration> {
    this.#configuration ??= this.#configure().catch((error: unknown) => {
      this.#configuration = undefined
      throw error
    })
    return this.#configuration
  }

  async start(): Promise<{ url: URL; state: string; codeVerifier: string }> {
    const configuration = await this.configuration()
    const codeVerifier = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const url = oidc.buildAuthorizationUrl(configuration, {
      ...this.options.authorizationParams,
      redirect_uri: this.redirectUri,
      response_type: 'code',
      scope: this.options.scopes.join(' '),
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
    })
    return { url, state, codeVerifier }
  }

  /** Redeems the code of the callback; throws on a state or `iss` mismatch or a refused code. */
  async finish(callbackUrl: URL, state: string, codeVerifier: string): Promise<VaultTokens> {
    const configuration = await this.configuration()
    const tokens = await oidc.authorizationCodeGrant(configuration, callbackUrl, {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
    })
    return tokensOf(tokens, undefined)
  }

  /**
   * Seconds left of the pause after refreshes failed with {@link ProviderUnavailable}; 0 when a refresh may
   * go. Its caller refuses at once meanwhile, instead of making each caller wait for a provider that is down.
   */
  pausedSeconds(): number {
    return Math.ceil(this.#backoff.remainingMs() / 1000)
  }

  /** A refreshed set; a rotated refresh token replaces the old one, else the old one is kept. */
  async refresh(refreshToken: string): Promise<VaultTokens> {
    try {
      const configuration = await this.configuration()
      const tokens = tokensOf(await oidc.refreshTokenGrant(configuration, refreshToken), refreshToken)
      this.#backoff.succeeded()
      return tokens
    } catch (error) {
      if (error instanceof oidc.ResponseBodyError && error.error === 'invalid_grant')
        throw new RefreshRefused(error.error_description ?? 'invalid_grant', { cause: error })
      if (!unavailable(error)) throw error
      const pause = Math.ceil(this.#backoff.failed() / 1000)
      throw new ProviderUnavailable((error as Error).message, pause, { cause: error })
    }
  }

  async revoke(token: string, hint: 'access_token' | 'refresh_token'): Promise<void> {
    const configuration = await this.configuration()
    if (!configuration.serverMetadata().revocation_endpoint) return
    await oidc.tokenRevocation(configuration, token, { token_type_hint: hint })
  }

  async #configure(): Promise<oidc.Configuration> {
    const { issuer, clientId, clientSecret } = this.options
    const auth = oidc.ClientSecretBasic(clientSecret)
    const metadata = { redirect_uris: [this.redirectUri] }
    const loopback = (url: string | undefined) => url !== undefined && new URL(url).protocol === 'http:'
    let configuration: oidc.Configuration
    if (issuer !== undefined) {
      configuration = await oidc.discovery(new URL(issuer), clientId, metadata, auth, {
        execute: loopback(issuer) ? [oidc.allowInsecureRequests] : [],
        timeout: TIMEOUT_SECONDS,
      })
    } else {
      const { authorizationEndpoint, tokenEndpoint, revocationEndpoint } = this.options
      configuration = new oidc.Configuration(
        {
          // Without discovery there is no issuer to check: the authorization endpoint's origin stands for it.
          issuer: new URL(authorizationEndpoint as string).origin,
          authorization_endpoint: authorizationEndpoint,
          token_endpoint: tokenEndpoint,
          ...(revocationEndpoint ? { revocation_endpoint: revocationEndpoint } : {}),
        },
        clientId,
        metadata,
        auth,
      )
      configuration.timeout = TIMEOUT_SECONDS
      if ([authorizationEndpoint, tokenEndpoint, revocationEndpoint].some(loopback))
        oidc.allowInsecureRequests(configuration)
    }
    return configuration
  }
}

/**
 * Whether a failed request found the provider unavailable: no answer (network error, timeout), or an answer
 * that says so (5xx, 429, `temporarily_unavailable`). Other answers refuse this request: pausing would not help.
 */
function unavailable(error: unknown): boolean {
  // openid-client: `status` on an OAuth error body (with its `error`) or a WWW-Authenticate challenge; the
  // Response as `cause` on another unexpected status.
  const { status, error: code, cause } = error as { status?: unknown; error?: unknown; cause?: unknown }
  if (typeof status === 'number')
    return unavailableAnswer(status, typeof code === 'string' ? code : undefined)
  return cause instanceof Response ? unavailableAnswer(cause.status, undefined) : true
}

function tokensOf(tokens: oidc.TokenEndpointResponse, previousRefresh: string | undefined): VaultTokens {
  const lifetime = tokens.expires_in
  return {
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token ?? previousRefresh,
    expiresAt: typeof lifetime === 'number' ? Math.floor(Date.now() / 1000) + lifetime : undefined,
    scope: tokens.scope,
  }
}
