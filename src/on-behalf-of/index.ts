import { hash } from 'node:crypto'
import { type AuthorizationServerMetadata, discoverAuthorizationServer } from '../guard/discovery.ts'
import { GuardError } from '../guard/errors.ts'
import { assertSecureUrl, describeNetworkError } from '../guard/lib/http.ts'
import { TtlCache } from '../guard/lib/ttl_cache.ts'
import { OnBehalfOfError } from './errors.ts'
import {
  ACCESS_TOKEN_TYPE,
  type Authenticate,
  type ClientCredentials,
  clientAuthentication,
  type ExchangeProfile,
  JWT_BEARER_GRANT,
  requestToken,
  TOKEN_EXCHANGE_GRANT,
} from './token_request.ts'

export type { OnBehalfOfErrorCode } from './errors.ts'
export { ON_BEHALF_OF_ERRORS, OnBehalfOfError } from './errors.ts'
export type { ClientAuthMethod, ClientCredentials, ExchangeProfile } from './token_request.ts'
export { ACCESS_TOKEN_TYPE, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT }

/**
 * Tokens for other APIs on behalf of the user of the current request, for a server that verified that
 * request with the guard: the user's access token is exchanged at an authorization server (RFC 8693 token
 * exchange, or Entra's on-behalf-of flow) with the server's own client credentials, and the answer kept until
 * shortly before it expires. The user's token is sent to the token endpoint only, never to the API.
 *
 * What is NOT checked: the exchanged token itself (its audience, signature, scopes). It is opaque to this
 * module and goes to the API, which verifies it.
 */
export interface OnBehalfOfOptions extends ClientCredentials {
  /** The issuer whose metadata (RFC 8414, then OpenID discovery) names the token endpoint. */
  issuer?: string
  /** The token endpoint itself; with `issuer` too, it wins over the metadata. */
  tokenEndpoint?: string
  /** Default `rfc8693`. */
  profile?: ExchangeProfile
  /**
   * `rfc8693`: the `subject_token_type` sent. Default `urn:ietf:params:oauth:token-type:access_token`;
   * Auth0's Custom Token Exchange needs the URI of its exchange profile instead.
   */
  subjectTokenType?: string
  /** `rfc8693`: the parameter that names the audience: `audience` (default; Auth0, Keycloak) or `resource` (RFC 8707). */
  targetParameter?: 'audience' | 'resource'
  /** Milliseconds the token endpoint has to answer; default 10 000. */
  timeoutMs?: number
  /** Tokens kept at most (per user token, audience and scope); the oldest goes first. Default 10 000. */
  cacheSize?: number
  /** A kept token is not handed out in its last seconds (at most half its lifetime); default 30. */
  expiryMarginSeconds?: number
}

/** The user, as the guard verified the request: its `VerifiedToken`, or the MCP SDK's `AuthInfo`. */
export interface Subject {
  /** The user's access token, as the request carried it. */
  token: string
  /** Seconds since the epoch; nothing exchanged for it is kept past this. */
  expiresAt?: number | undefined
}

/** The API a token is wanted for. `rfc8693` needs the audience; `entra_obo` the scope (`api://orders/.default`). */
export interface Target {
  audience?: string | undefined
  /** Only narrows: the provider grants at most what the user's token allows. */
  scope?: string | undefined
}

export interface ExchangedToken {
  accessToken: string
  /** Seconds since the epoch; `undefined` when the provider did not say (then the token is not kept). */
  expiresAt: number | undefined
  /** The scopes the provider says it granted, when it says. */
  scope: string | undefined
}

export interface OnBehalfOf {
  /**
   * A token for `target` for the user of `subject`: from memory while it is fresh, else exchanged once,
   * however many calls ask at the same time. Throws an {@link OnBehalfOfError}.
   */
  tokenFor(subject: Subject, target: Target): Promise<ExchangedToken>
  /** Finds the token endpoint (discovery) or checks that it answers; throws when it cannot. For start-up. */
  check(): Promise<URL>
}

const DEFAULT_TIMEOUT_MS = 10_000
const DEFAULT_CACHE_SIZE = 10_000
const DEFAULT_MARGIN_SECONDS = 30

export function createOnBehalfOf(options: OnBehalfOfOptions): OnBehalfOf {
  if (!options.clientId) throw new TypeError('clientId is required')
  if (options.issuer === undefined && options.tokenEndpoint === undefined)
    throw new TypeError('give issuer (discovery) or tokenEndpoint')
  const profile = options.profile ?? 'rfc8693'
  if (profile !== 'rfc8693' && profile !== 'entra_obo') throw new TypeError(`unknown profile ${profile}`)
  return new Exchanger(options, profile, clientAuthentication(options))
}

class Exchanger implements OnBehalfOf {
  readonly #options: OnBehalfOfOptions
  readonly #profile: ExchangeProfile
  readonly #authenticate: Authenticate
  readonly #timeoutMs: number
  readonly #margin: number
  readonly #cache: TtlCache<ExchangedToken>
  /** Exchanges under way, by cache key: a second caller waits for the first one's answer. */
  readonly #pending = new Map<string, Promise<ExchangedToken>>()
  #endpoint: Promise<URL> | undefined

  constructor(options: OnBehalfOfOptions, profile: ExchangeProfile, authenticate: Authenticate) {
    this.#options = options
    this.#profile = profile
    this.#authenticate = authenticate
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    this.#margin = options.expiryMarginSeconds ?? DEFAULT_MARGIN_SECONDS
    this.#cache = new TtlCache(options.cacheSize ?? DEFAULT_CACHE_SIZE)
  }

  async tokenFor(subject: Subject, target: Target): Promise<ExchangedToken> {
    if (typeof subject?.token !== 'string' || subject.token === '')
      throw new TypeError('subject.token is required')
    if (this.#profile === 'rfc8693' && !target.audience) throw new TypeError('rfc8693 needs target.audience')
    if (this.#profile === 'entra_obo' && !target.scope)
      throw new TypeError('entra_obo needs target.scope (e.g. api://orders/.default)')
    // The user's token is kept as a hash only: the cache must not be a second store of bearer tokens.
    const key = JSON.stringify([
      hash('sha256', subject.token, 'base64url'),
      target.audience ?? null,
      target.scope ?? null,
    ])
    const cached = this.#cache.get(key)
    if (cached) return cached
    const pending = this.#pending.get(key)
    if (pending) return pending
    const exchange = this.#exchange(subject, target, key).finally(() => this.#pending.delete(key))
    this.#pending.set(key, exchange)
    return exchange
  }

  async #exchange(subject: Subject, target: Target, key: string): Promise<ExchangedToken> {
    const answer = await requestToken(
      await this.check(),
      this.#authenticate,
      {
        profile: this.#profile,
        subjectToken: subject.token,
        subjectTokenType: this.#options.subjectTokenType ?? ACCESS_TOKEN_TYPE,
        audience: target.audience,
        targetParameter: this.#options.targetParameter ?? 'audience',
        scope: target.scope,
      },
      this.#timeoutMs,
    )
    const now = Math.floor(Date.now() / 1000)
    const expiresAt = answer.expiresIn === undefined ? undefined : now + answer.expiresIn
    const token = { accessToken: answer.accessToken, expiresAt, scope: answer.scope }
    if (expiresAt !== undefined) {
      // Never kept past the user's own token, nor into its last seconds.
      const until = Math.min(
        expiresAt - Math.min(this.#margin, (answer.expiresIn as number) / 2),
        subject.expiresAt ?? Infinity,
      )
      if (until > now) this.#cache.set(key, token, until * 1000)
    }
    return token
  }

  check(): Promise<URL> {
    this.#endpoint ??= this.#findEndpoint().catch((error: unknown) => {
      this.#endpoint = undefined
      throw error
    })
    return this.#endpoint
  }

  async #findEndpoint(): Promise<URL> {
    const { issuer, tokenEndpoint } = this.#options
    if (tokenEndpoint !== undefined) {
      const url = parseEndpoint(tokenEndpoint, 'tokenEndpoint')
      await answers(url, this.#timeoutMs)
      return url
    }
    let metadata: AuthorizationServerMetadata
    try {
      metadata = await discoverAuthorizationServer(issuer as string, { timeoutMs: this.#timeoutMs })
    } catch (error) {
      if (!(error instanceof GuardError)) throw error
      throw new OnBehalfOfError('provider_unavailable', error.detail, { cause: error })
    }
    if (typeof metadata.token_endpoint !== 'string')
      throw new OnBehalfOfError('exchange_failed', `the metadata of ${issuer} names no token_endpoint`)
    const grant = this.#profile === 'entra_obo' ? JWT_BEARER_GRANT : TOKEN_EXCHANGE_GRANT
    const grants = metadata.grant_types_supported
    if (Array.isArray(grants) && !grants.includes(grant))
      throw new OnBehalfOfError(
        'exchange_failed',
        `${issuer} does not list the grant type ${grant} in grant_types_supported`,
      )
    return parseEndpoint(metadata.token_endpoint, `the token_endpoint of ${issuer}`)
  }
}

function parseEndpoint(value: string, what: string): URL {
  const url = URL.parse(value)
  if (!url) throw new OnBehalfOfError('exchange_failed', `${what} ${JSON.stringify(value)} is not a URL`)
  try {
    assertSecureUrl(url, what)
  } catch (error) {
    throw new OnBehalfOfError('exchange_failed', (error as Error).message)
  }
  return url
}

/** Any HTTP answer will do (a token endpoint refuses a GET): the endpoint is there. */
async function answers(url: URL, timeoutMs: number): Promise<void> {
  try {
    const response = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) })
    await response.body?.cancel()
  } catch (cause) {
    const why =
      (cause as Error).name === 'TimeoutError'
        ? `no answer within ${timeoutMs} ms`
        : describeNetworkError(cause)
    throw new OnBehalfOfError('provider_unavailable', `token endpoint ${url.href}: ${why}`, { cause })
  }
}
