import type { GuardError } from '../errors.ts'
import type { CheckOptions, Guard } from '../guard.ts'
import type { VerifiedToken } from '../identity.ts'
import { withGuard } from './fetch.ts'

/**
 * The MCP SDK's `AuthInfo` (v1 `@modelcontextprotocol/sdk` and v2 `@modelcontextprotocol/server`), declared
 * here structurally so the guard needs neither SDK at run time nor to type-check.
 */
export interface GuardAuthInfo {
  /** The raw access token. Never log it. */
  token: string
  /** Empty when the token names no client (`client_id` or `azp`). */
  clientId: string
  scopes: string[]
  expiresAt?: number
  resource: URL
  extra: {
    subject: string | undefined
    issuer: string
    claims: Readonly<Record<string, unknown>>
  }
}

/** The verified token in the shape MCP tool handlers receive as `extra.authInfo` (v1) or `ctx.http.authInfo` (v2). */
export function toAuthInfo(token: VerifiedToken, resource: string | URL): GuardAuthInfo {
  return {
    token: token.token,
    clientId: token.clientId ?? '',
    scopes: [...token.scopes],
    ...(token.expiresAt === undefined ? {} : { expiresAt: token.expiresAt }),
    resource: new URL(resource),
    extra: { subject: token.subject, issuer: token.issuer, claims: token.claims },
  }
}

type ErrorClass = new (message: string) => Error

/**
 * The SDK's own error classes, which its bearer middleware recognises with `instanceof`: the v1 module
 * (`import * as errors from '@modelcontextprotocol/sdk/server/auth/errors.js'`) or v2's `{ OAuthError }`
 * from `@modelcontextprotocol/server`. Passed in so the guard never loads an SDK itself.
 */
export type SdkErrors =
  | { InvalidTokenError: ErrorClass; InsufficientScopeError: ErrorClass; ServerError: ErrorClass }
  | { OAuthError: new (code: string, message: string) => Error }

/** The SDK's `OAuthTokenVerifier` interface. */
export interface GuardTokenVerifier {
  verifyAccessToken(token: string): Promise<GuardAuthInfo>
}

/**
 * A verifier for the SDK's own `requireBearerAuth`. The bearer middleware hands over a bare token, so the
 * guard checks it as a Bearer request to its resource: a DPoP-bound token is refused (no proof can be
 * checked here), and the guard's own `scopes` still apply.
 */
export function guardTokenVerifier(guard: Guard, errors: SdkErrors): GuardTokenVerifier {
  return {
    async verifyAccessToken(token) {
      const result = await guard.check({
        method: 'GET',
        url: guard.resource,
        headers: { authorization: `Bearer ${token}` },
      })
      if (!result.ok) throw sdkError(errors, oauthCode(result.error), result.error.publicDescription)
      return toAuthInfo(result.token, guard.resource)
    },
  }
}

type SdkErrorCode = 'invalid_token' | 'insufficient_scope' | 'server_error'

// The SDK's middleware knows only these three; any other guard status is a token it must refuse.
function oauthCode(error: GuardError): SdkErrorCode {
  if (error.status === 403) return 'insufficient_scope'
  if (error.status >= 500) return 'server_error'
  return 'invalid_token'
}

function sdkError(errors: SdkErrors, code: SdkErrorCode, description: string): Error {
  // The v1 module exports an OAuthError too, with another constructor: test for v1 first.
  if (!('InvalidTokenError' in errors)) return new errors.OAuthError(code, description)
  const byCode = {
    invalid_token: errors.InvalidTokenError,
    insufficient_scope: errors.InsufficientScopeError,
    server_error: errors.ServerError,
  }
  return new byCode[code](description)
}

/** The `options` that v2's `createMcpHandler(...).fetch` and web-standard transport take. */
export interface McpHandlerOptions {
  authInfo: GuardAuthInfo
}

/**
 * A guarded fetch handler for the v2 SDK, which reads the caller from the `authInfo` option rather than from
 * the request: `guardMcpFetch(guard, (request, options) => mcpHandler.fetch(request, options))`.
 */
export function guardMcpFetch(
  guard: Guard,
  handler: (request: Request, options: McpHandlerOptions) => Promise<Response>,
  options: CheckOptions = {},
): (request: Request) => Promise<Response> {
  return withGuard(
    guard,
    (request, token) => handler(request, { authInfo: toAuthInfo(token, guard.resource) }),
    options,
  )
}
