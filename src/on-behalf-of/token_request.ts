import { createPrivateKey, type KeyObject, randomUUID } from 'node:crypto'
import { SignJWT } from 'jose'
import { assertSecureUrl, describeNetworkError, FetchFailure, readCapped } from '../guard/lib/http.ts'
import { OnBehalfOfError, type OnBehalfOfErrorCode } from './errors.ts'

/** RFC 8693 §2.1. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
/** RFC 7523 §2.1: Entra's on-behalf-of flow is this grant with `requested_token_use=on_behalf_of`. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt'

/**
 * How the token endpoint is asked. `rfc8693`: token exchange (Gatehouse, Auth0 Custom Token Exchange,
 * Keycloak standard token exchange). `entra_obo`: Microsoft Entra's on-behalf-of flow, where the target API
 * is named by the scope (`api://orders/.default`), not by an audience.
 */
export type ExchangeProfile = 'rfc8693' | 'entra_obo'
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt'

/** The exchanging client, as it authenticates to the token endpoint. */
export interface ClientCredentials {
  clientId: string
  clientSecret?: string | undefined
  /** `private_key_jwt` (RFC 7523 §2.2): a PEM or a key; the algorithm follows from it (ES256, RS256, EdDSA). */
  privateKey?: string | KeyObject | undefined
  keyId?: string | undefined
  /** Default: `client_secret_basic` with a secret, `private_key_jwt` with a key. */
  method?: ClientAuthMethod | undefined
}

export interface ExchangeRequest {
  profile: ExchangeProfile
  subjectToken: string
  subjectTokenType: string
  audience: string | undefined
  /** The RFC 8693 parameter that names the audience (RFC 8707's `resource`, or `audience`). */
  targetParameter: 'audience' | 'resource'
  scope: string | undefined
}

export interface ExchangeAnswer {
  accessToken: string
  /** Seconds; `undefined` when the provider did not say. */
  expiresIn: number | undefined
  scope: string | undefined
}

const MAX_ANSWER_BYTES = 64 * 1024

/** Provider errors about the user's token: a new sign-in may help (RFC 8693 §2.2.2 says `invalid_request`). */
const SUBJECT_ERRORS = new Set(['invalid_grant', 'invalid_request', 'invalid_token'])
/** Provider errors about what this user may have for this API: the policy said no. */
const REFUSALS = new Set([
  'invalid_target',
  'invalid_scope',
  'access_denied',
  'consent_required',
  'interaction_required',
])

/** Signs client assertions; checked once, when the options are read. */
export function clientAuthentication(credentials: ClientCredentials) {
  const method =
    credentials.method ?? (credentials.privateKey !== undefined ? 'private_key_jwt' : 'client_secret_basic')
  if (method === 'private_key_jwt') {
    if (credentials.privateKey === undefined) throw new TypeError('private_key_jwt needs privateKey')
    const key =
      typeof credentials.privateKey === 'string'
        ? createPrivateKey(credentials.privateKey)
        : credentials.privateKey
    const alg = algorithmOf(key)
    return async (endpoint: URL, body: URLSearchParams, headers: Record<string, string>) => {
      const now = Math.floor(Date.now() / 1000)
      const assertion = await new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg, ...(credentials.keyId ? { kid: credentials.keyId } : {}) })
        .setIssuer(credentials.clientId)
        .setSubject(credentials.clientId)
        .setAudience(endpoint.href)
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(key)
      body.set('client_id', credentials.clientId)
      body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
      body.set('client_assertion', assertion)
      return headers
    }
  }
  const secret = credentials.clientSecret
  if (!secret) throw new TypeError(`${method} needs clientSecret`)
  if (method === 'client_secret_post') {
    return async (_endpoint: URL, body: URLSearchParams, headers: Record<string, string>) => {
      body.set('client_id', credentials.clientId)
      body.set('client_secret', secret)
      return headers
    }
  }
  // RFC 6749 §2.3.1: each part form-encoded before the base64.
  const basic = `Basic ${Buffer.from(`${formEncode(credentials.clientId)}:${formEncode(secret)}`).toString('base64')}`
  return async (_endpoint: URL, _body: URLSearchParams, headers: Record<string, string>) => ({
    ...headers,
    authorization: basic,
  })
}

export type Authenticate = ReturnType<typeof clientAuthentication>

const formEncode = (value: string) => new URLSearchParams({ v: value }).toString().slice(2)

function algorithmOf(key: KeyObject): string {
  if (key.asymmetricKeyType === 'rsa') return 'RS256'
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA'
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve === 'prime256v1') return 'ES256'
    if (curve === 'secp384r1') return 'ES384'
  }
  throw new TypeError('privateKey must be an RSA, P-256, P-384 or Ed25519 private key')
}

/** The grant's parameters, per profile. */
function grantParameters(request: ExchangeRequest): URLSearchParams {
  const body = new URLSearchParams()
  if (request.profile === 'entra_obo') {
    body.set('grant_type', JWT_BEARER_GRANT)
    body.set('assertion', request.subjectToken)
    body.set('requested_token_use', 'on_behalf_of')
  } else {
    body.set('grant_type', TOKEN_EXCHANGE_GRANT)
    body.set('subject_token', request.subjectToken)
    body.set('subject_token_type', request.subjectTokenType)
    if (request.audience !== undefined) body.set(request.targetParameter, request.audience)
  }
  if (request.scope !== undefined) body.set('scope', request.scope)
  return body
}

/**
 * One exchange at the token endpoint. Every failure is an {@link OnBehalfOfError}: the provider's refusals
 * by their OAuth `error`, anything unreadable as `exchange_failed`, no answer as `provider_unavailable`.
 */
export async function requestToken(
  endpoint: URL,
  authenticate: Authenticate,
  request: ExchangeRequest,
  timeoutMs: number,
): Promise<ExchangeAnswer> {
  const body = grantParameters(request)
  const headers = await authenticate(endpoint, body, {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  })
  const signal = AbortSignal.timeout(timeoutMs)
  const send = () => fetch(endpoint, { method: 'POST', headers, body, redirect: 'manual', signal })
  let response: Response
  try {
    assertSecureUrl(endpoint, 'token endpoint')
    // A kept-alive connection the server closed as it was reused fails before any answer: sent once more.
    response = await send().catch((error: unknown) =>
      staleConnection(error) ? send() : Promise.reject(error),
    )
  } catch (cause) {
    if (cause instanceof FetchFailure) throw new OnBehalfOfError('exchange_failed', cause.message)
    const why =
      (cause as Error).name === 'TimeoutError'
        ? `no answer within ${timeoutMs} ms`
        : describeNetworkError(cause)
    throw new OnBehalfOfError('provider_unavailable', `token endpoint ${endpoint.href}: ${why}`, { cause })
  }
  const answer = await readAnswer(response, endpoint)
  if (response.status === 200) return tokenOf(answer, endpoint)
  throw refusal(response.status, answer, endpoint)
}

const staleConnection = (error: unknown) => {
  const code = (error as { cause?: { code?: string } }).cause?.code
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET'
}

async function readAnswer(response: Response, endpoint: URL): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readCapped(response, MAX_ANSWER_BYTES)
  } catch (cause) {
    throw new OnBehalfOfError(
      'exchange_failed',
      `token endpoint ${endpoint.href} ${(cause as Error).message}`,
    )
  }
  try {
    const json: unknown = JSON.parse(text)
    return typeof json === 'object' && json !== null && !Array.isArray(json)
      ? (json as Record<string, unknown>)
      : {}
  } catch {
    return {}
  }
}

/** A token endpoint's answer that it cannot serve for now (5xx, 429, `temporarily_unavailable`): worth a later try. */
export const unavailableAnswer = (status: number, error: string | undefined): boolean =>
  status >= 500 || status === 429 || error === 'temporarily_unavailable'

function refusal(status: number, answer: Record<string, unknown>, endpoint: URL): OnBehalfOfError {
  const error = typeof answer.error === 'string' ? answer.error : undefined
  const said =
    typeof answer.error_description === 'string' ? `: ${answer.error_description.slice(0, 300)}` : ''
  const detail = `token endpoint ${endpoint.href} answered HTTP ${status}${error ? ` ${error}` : ''}${said}`
  let code: OnBehalfOfErrorCode = 'exchange_failed'
  if (unavailableAnswer(status, error)) code = 'provider_unavailable'
  else if (error !== undefined && SUBJECT_ERRORS.has(error)) code = 'subject_rejected'
  else if (error !== undefined && REFUSALS.has(error)) code = 'exchange_refused'
  return new OnBehalfOfError(code, detail, error === undefined ? {} : { providerError: error })
}

/** A usable bearer access token, or `exchange_failed`: never a token type the caller cannot send. */
function tokenOf(answer: Record<string, unknown>, endpoint: URL): ExchangeAnswer {
  const bad = (why: string): never => {
    throw new OnBehalfOfError('exchange_failed', `token endpoint ${endpoint.href} answered 200 ${why}`)
  }
  const { access_token: accessToken, token_type: tokenType, expires_in: expiresIn } = answer
  if (typeof accessToken !== 'string' || accessToken === '') bad('without an access_token')
  // It goes into an Authorization header: RFC 6750's b64token, nothing that could end the header.
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(accessToken as string))
    bad('with an access_token that is not a b64token')
  if (typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer')
    bad(`with token_type ${JSON.stringify(tokenType)}, not Bearer`)
  const issued = answer.issued_token_type
  if (issued !== undefined && issued !== ACCESS_TOKEN_TYPE && issued !== JWT_TOKEN_TYPE)
    bad(`with issued_token_type ${JSON.stringify(issued)}, not an access token`)
  const lifetime = typeof expiresIn === 'string' && /^\d+$/.test(expiresIn) ? Number(expiresIn) : expiresIn
  if (lifetime !== undefined && (typeof lifetime !== 'number' || !(lifetime > 0)))
    bad(`with expires_in ${JSON.stringify(expiresIn)}`)
  return {
    accessToken: accessToken as string,
    expiresIn: lifetime as number | undefined,
    scope: typeof answer.scope === 'string' ? answer.scope : undefined,
  }
}
