/**
 * Every failure the guard reports has one code from this registry. The registry fixes, per code, the HTTP
 * status, the OAuth error and the public `error_description`; the `detail` of a {@link GuardError} carries
 * the specific values (issuer, audience, URL) and goes to logs only, never to the wire.
 *
 * `docs/errors.md` lists the same codes; `test/errors.test.ts` keeps the two from drifting.
 */
export const GUARD_ERRORS = {
  token_missing: { status: 401, error: undefined, description: 'an access token is required' },
  token_in_query: {
    status: 400,
    error: 'invalid_request',
    description: 'access tokens must be sent in the Authorization header, never in the URL',
  },
  credentials_duplicated: {
    status: 400,
    error: 'invalid_request',
    description: 'the request carries more than one access token',
  },
  scheme_unsupported: {
    status: 401,
    error: 'invalid_token',
    description: 'the Authorization header must use the Bearer or DPoP scheme',
  },
  token_too_large: { status: 401, error: 'invalid_token', description: 'the access token is too large' },
  token_malformed: {
    status: 401,
    error: 'invalid_token',
    description: 'the access token is not a well-formed signed JWT',
  },
  token_opaque: {
    status: 401,
    error: 'invalid_token',
    description: 'the access token is not a JWT and this resource has no introspection endpoint configured',
  },
  token_type_invalid: {
    status: 401,
    error: 'invalid_token',
    description: 'the token is not a JWT access token (typ must be at+jwt)',
  },
  algorithm_not_allowed: {
    status: 401,
    error: 'invalid_token',
    description: 'the token is signed with an algorithm this resource does not accept',
  },
  key_not_found: {
    status: 401,
    error: 'invalid_token',
    description: "no key in the issuer's JWKS matches the token",
  },
  signature_invalid: { status: 401, error: 'invalid_token', description: 'the token signature is invalid' },
  issuer_untrusted: {
    status: 401,
    error: 'invalid_token',
    description: 'the token was issued by an authorization server this resource does not trust',
  },
  issuer_trailing_slash: {
    status: 401,
    error: 'invalid_token',
    description: 'the token issuer differs from the trusted issuer only by a trailing slash',
  },
  audience_mismatch: {
    status: 401,
    error: 'invalid_token',
    description: 'the token was not issued for this resource (audience mismatch)',
  },
  token_expired: { status: 401, error: 'invalid_token', description: 'the access token has expired' },
  token_not_yet_valid: {
    status: 401,
    error: 'invalid_token',
    description: 'the access token is not valid yet (nbf or iat is in the future)',
  },
  token_lifetime_too_long: {
    status: 401,
    error: 'invalid_token',
    description: 'the access token lifetime exceeds what this resource accepts',
  },
  claim_invalid: {
    status: 401,
    error: 'invalid_token',
    description: 'a required claim of the access token is missing or malformed',
  },
  token_inactive: {
    status: 401,
    error: 'invalid_token',
    description: 'the access token is not active',
  },
  token_revoked: {
    status: 401,
    error: 'invalid_token',
    description: 'the access token has been revoked',
  },
  dpop_proof_invalid: {
    status: 401,
    error: 'invalid_dpop_proof',
    description: 'the DPoP proof is missing, invalid or does not match the request',
  },
  dpop_binding_mismatch: {
    status: 401,
    error: 'invalid_token',
    description:
      'the access token is DPoP-bound and must be presented with the DPoP scheme and a matching proof',
  },
  dpop_replay_cache_full: {
    status: 503,
    error: 'temporarily_unavailable',
    description: 'too many DPoP proofs are in use right now; retry shortly',
  },
  dpop_replay_unavailable: {
    status: 503,
    error: 'temporarily_unavailable',
    description: 'DPoP proofs cannot be checked for replay right now; retry shortly',
  },
  insufficient_scope: {
    status: 403,
    error: 'insufficient_scope',
    description: 'the access token lacks the scopes this operation requires',
  },
  authorization_server_unavailable: {
    status: 503,
    error: 'temporarily_unavailable',
    description: "the authorization server's keys or introspection endpoint cannot be reached right now",
  },
  discovery_failed: {
    status: 500,
    error: undefined,
    description: 'authorization server discovery failed',
  },
  config_invalid: { status: 500, error: undefined, description: 'the guard configuration is invalid' },
} as const satisfies Record<string, { status: number; error: string | undefined; description: string }>

export type GuardErrorCode = keyof typeof GUARD_ERRORS

/** The one error class of the guard. `message` and `detail` are for operators; {@link publicDescription} is for the wire. */
export class GuardError extends Error {
  override name = 'GuardError'
  readonly code: GuardErrorCode
  /** Specific context for logs: values compared, URLs fetched. Never contains a token. */
  readonly detail: string

  constructor(code: GuardErrorCode, detail?: string, options?: ErrorOptions) {
    super(detail ? `${GUARD_ERRORS[code].description}: ${detail}` : GUARD_ERRORS[code].description, options)
    this.code = code
    this.detail = detail ?? ''
  }

  get status(): number {
    return GUARD_ERRORS[this.code].status
  }

  get oauthError(): string | undefined {
    return GUARD_ERRORS[this.code].error
  }

  get publicDescription(): string {
    return GUARD_ERRORS[this.code].description
  }
}

export const isGuardError = (value: unknown): value is GuardError => value instanceof GuardError
