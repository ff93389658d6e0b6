import type { ServerResponse } from 'node:http'
import { defineErrors, type ErrorEntry, type ErrorSet, GatehouseError } from '../errors/index.ts'

interface AuthServerEntry extends ErrorEntry {
  /** The OAuth `error` of a JSON answer (RFC 6749 §5.2, RFC 7591 §3.2.2); absent for pages and start-up errors. */
  readonly error?: string
  /** The title of a sign-in or consent page that shows the error (with `description` as its text). */
  readonly title?: string
  /**
   * The `detail` goes on the wire as `error_description`: it names only what the client itself sent (its
   * redirect URI, its origin) or the limit it hit, never a secret.
   */
  readonly detailIsPublic?: boolean
}

const REGISTRY = {
  options_invalid: { status: 500, description: 'the authorization server options are invalid' },
  signing_key_unreadable: {
    status: 500,
    description: 'a stored signing key cannot be decrypted with the configured secret',
  },
  signing_key_missing: { status: 500, description: 'there is no signing key yet' },
  vault_key_invalid: { status: 500, description: 'the token vault keys are missing or malformed' },
  vault_key_unknown: {
    status: 500,
    description: 'a vault row was sealed with a key that is not configured',
  },
  vault_unreadable: {
    status: 500,
    description: 'a vault row cannot be decrypted with the configured key',
  },
  vault_connection_invalid: { status: 500, description: 'a token vault connection is misconfigured' },
  username_invalid: { status: 400, description: 'the username is not allowed' },
  password_invalid: { status: 400, description: 'the password is too short or too long' },
  user_exists: { status: 409, description: 'a user with this username already exists' },

  registration_redirect_uri_invalid: {
    status: 400,
    error: 'invalid_redirect_uri',
    description: 'a redirect URI of the registration is not allowed',
    detailIsPublic: true,
  },
  registration_metadata_invalid: {
    status: 400,
    error: 'invalid_client_metadata',
    description: 'the client metadata asks for what a self-registered client may not have',
    detailIsPublic: true,
  },
  registration_too_large: {
    status: 413,
    error: 'invalid_request',
    description: 'the registration request is larger than 56 KiB',
  },
  too_many_requests: {
    status: 429,
    error: 'too_many_requests',
    description: 'too many requests from this address; retry later',
    detailIsPublic: true,
  },
  origin_not_allowed: {
    status: 403,
    error: 'invalid_request',
    description: 'requests from this origin are not allowed',
    detailIsPublic: true,
  },
  logout_redirect_refused: {
    status: 400,
    error: 'invalid_request',
    description: 'post_logout_redirect_uri is honoured only for clients the operator declared',
    detailIsPublic: true,
  },

  interaction_expired: {
    status: 400,
    title: 'Sign-in expired',
    description:
      'This sign-in request expired, was already completed, was started in another browser, or another sign-in was started in this browser since. Start again from your app.',
  },
  csrf_invalid: {
    status: 403,
    title: 'Request refused',
    description: 'This form did not come from the current sign-in page. Start again from your app.',
  },
  rate_limited: {
    status: 429,
    title: 'Too many attempts',
    description:
      'Too many sign-in attempts from this address. Wait a little (the wait grows with each wrong password), then try again.',
  },
  upstream_state_invalid: {
    status: 400,
    title: 'Sign-in failed',
    description:
      'This sign-in response does not belong to this browser, or it expired. Start again from your app.',
  },
  upstream_state_used: {
    status: 400,
    title: 'Sign-in failed',
    description: 'This sign-in response was already used. Start again from your app.',
  },
  upstream_denied: {
    status: 400,
    title: 'Sign-in cancelled',
    description: 'The identity provider did not sign you in.',
  },
  upstream_failed: {
    status: 400,
    title: 'Sign-in failed',
    description: 'The answer of the identity provider could not be verified, so you were not signed in.',
  },
  upstream_unavailable: {
    status: 502,
    title: 'Sign-in unavailable',
    description: 'The identity provider could not be reached. Try again later.',
  },
  connect_sign_in_required: {
    status: 401,
    title: 'Sign in first',
    description:
      'Connecting an account needs you signed in to this server in this browser. Open the connect link again: it signs you in first.',
  },
  connect_sign_in_failed: {
    status: 400,
    title: 'Sign-in failed',
    description:
      'This sign-in does not belong to this browser, was already used, or expired. Open the connect link again.',
  },
  connect_state_invalid: {
    status: 400,
    title: 'Connection failed',
    description:
      'This answer of the provider does not belong to this browser, was already used, or expired. Start again.',
  },
  connect_denied: {
    status: 400,
    title: 'Connection cancelled',
    description: 'The provider did not grant access, so nothing was connected.',
  },
  connect_rate_limited: {
    status: 429,
    title: 'Too many attempts',
    description: 'Too many connections started from this account. Wait a few minutes, then try again.',
  },
  connect_failed: {
    status: 502,
    title: 'Connection failed',
    description: 'The provider could not be reached or its answer could not be verified. Try again later.',
  },
  not_found: { status: 404, title: 'Not found', description: 'There is no sign-in page here.' },
  method_not_allowed: {
    status: 405,
    title: 'Not allowed',
    description: 'This page does not accept that request.',
  },
  bad_request: {
    status: 400,
    title: 'Bad request',
    description: 'The form could not be read. Start again from your app.',
  },
  console_not_found: { status: 404, title: 'Not found', description: 'There is no console page here.' },
  console_not_admin: {
    status: 403,
    title: 'Not an administrator',
    description: 'This account is not an administrator of this server.',
  },
  console_csrf_invalid: {
    status: 403,
    title: 'Request refused',
    description: 'This action did not come from a page of this console. Open the console and try again.',
  },
  console_sign_in_failed: {
    status: 400,
    title: 'Sign-in failed',
    description:
      'This sign-in did not start in this browser, expired or was already used. Open the console again.',
  },
  server_error: {
    status: 500,
    title: 'Something went wrong',
    description: 'The sign-in could not be completed. Start again from your app.',
  },
} as const satisfies Record<string, AuthServerEntry>

export type AuthServerErrorCode = keyof typeof REGISTRY
/** The codes a sign-in or consent page shows (they have a title). */
export type PageErrorCode = {
  [K in AuthServerErrorCode]: (typeof REGISTRY)[K] extends { title: string } ? K : never
}[AuthServerErrorCode]
/** The codes answered as an OAuth JSON error. */
export type OAuthErrorCode = {
  [K in AuthServerErrorCode]: (typeof REGISTRY)[K] extends { error: string } ? K : never
}[AuthServerErrorCode]

/**
 * The authorization server's registry: its options and accounts (raised at start or by the admin commands),
 * the OAuth JSON answers of Gatehouse's own middlewares, and the sign-in pages' failures.
 */
export const AUTH_SERVER_ERRORS: ErrorSet<Record<AuthServerErrorCode, AuthServerEntry>> = defineErrors(
  'auth-server',
  REGISTRY,
)

export class AuthServerError extends GatehouseError<Record<AuthServerErrorCode, AuthServerEntry>> {
  override name = 'AuthServerError'

  constructor(code: AuthServerErrorCode, detail?: string, options?: ErrorOptions) {
    super(AUTH_SERVER_ERRORS, code, detail, options)
  }

  override get publicDescription(): string {
    return this.entry.detailIsPublic && this.detail ? this.detail : this.entry.description
  }
}

/** A page's title and text for a failure code. */
export const pageError = (code: PageErrorCode) => REGISTRY[code]

/** What Gatehouse's Koa middlewares see of the provider's context. */
interface KoaReply {
  status: number
  type: string
  body: unknown
  set(field: string, value: string): void
}

/**
 * Answers with the OAuth JSON error of `code` (status, `error`, `error_description`), uncached; `detail`
 * becomes the description only for codes whose detail is public. Works on a Koa context (the provider's
 * middlewares) or a bare response (routing in front of the provider).
 */
export function sendOAuthError(
  target: KoaReply | ServerResponse,
  code: OAuthErrorCode,
  detail?: string,
  headers: Record<string, string> = {},
): void {
  const error = new AuthServerError(code, detail)
  const body = { error: error.entry.error, error_description: error.publicDescription }
  const fields = { 'cache-control': 'no-store', ...headers }
  if ('writeHead' in target) {
    target
      .writeHead(error.status, { 'content-type': 'application/json', ...fields })
      .end(JSON.stringify(body))
    return
  }
  for (const [name, value] of Object.entries(fields)) target.set(name, value)
  target.status = error.status
  target.type = 'application/json'
  target.body = body
}
