import { defineErrors, type ErrorEntry, GatehouseError } from '../errors/index.ts'

interface OnBehalfOfEntry extends ErrorEntry {
  /** The `error` of the `WWW-Authenticate` challenge a server answers its client with (RFC 6750 §3.1). */
  readonly error?: string
}

/**
 * Why a token for an API could not be had for the user. The `detail` (the provider's `error` and
 * `error_description`, the URL called, the cause) is for logs; it never holds a token or a secret.
 */
export const ON_BEHALF_OF_ERRORS = defineErrors('on-behalf-of', {
  exchange_refused: {
    status: 403,
    error: 'insufficient_scope',
    description: "the authorization server refused a token for the API on the user's behalf",
  },
  subject_rejected: {
    status: 401,
    error: 'invalid_token',
    description: "the authorization server no longer accepts the user's token; sign in again",
  },
  exchange_failed: {
    status: 502,
    description: 'the token exchange failed; check the exchanging client and its authorization server',
  },
  provider_unavailable: {
    status: 503,
    description: 'the authorization server that exchanges tokens cannot be reached; try again later',
  },
} satisfies Record<string, OnBehalfOfEntry>)

export type OnBehalfOfErrorCode = keyof typeof ON_BEHALF_OF_ERRORS.registry

export class OnBehalfOfError extends GatehouseError<typeof ON_BEHALF_OF_ERRORS.registry> {
  override name = 'OnBehalfOfError'
  /** The provider's OAuth `error`, when it answered with one. */
  readonly providerError: string | undefined

  constructor(
    code: OnBehalfOfErrorCode,
    detail?: string,
    options?: ErrorOptions & { providerError?: string },
  ) {
    super(ON_BEHALF_OF_ERRORS, code, detail, options)
    this.providerError = options?.providerError
  }
}
