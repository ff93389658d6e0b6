import { GuardError } from './errors.ts'
import { actorOf, audiencesOf, scopesOf, type VerifiedToken } from './identity.ts'
import { checkAudience, checkConfirmation, checkOptionalString, checkScopeClaims } from './lib/claims.ts'
import { assertSecureUrl, FetchFailure, fetchJson } from './lib/http.ts'

export interface IntrospectionClient {
  issuer: string
  endpoint: URL
  clientId: string
  clientSecret: string
  timeoutMs: number
}

/**
 * Asks the authorization server about an opaque token (RFC 7662). `active: false` is final. When present,
 * `iss` must be the server's issuer, `exp` must be ahead, and `aud` must name this resource; a server that
 * returns no `aud` is accepted only when any audience is (RFC 7662 makes `aud` optional, and a resource
 * cannot tell whose token it is without it).
 *
 * Not checked: `token_type` beyond refusing refresh tokens; `nbf`/`iat` (the server's `active` covers them).
 */
export async function introspect(
  token: string,
  client: IntrospectionClient,
  audiences: ReadonlySet<string> | undefined,
  now: number,
): Promise<VerifiedToken> {
  assertSecureUrl(client.endpoint, 'introspection endpoint')
  const credentials = Buffer.from(
    `${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`,
  ).toString('base64')
  let answer: Record<string, unknown>
  try {
    answer = await fetchJson(client.endpoint, {
      timeoutMs: client.timeoutMs,
      maxBytes: 64 * 1024,
      init: {
        method: 'POST',
        headers: {
          authorization: `Basic ${credentials}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
      },
    })
  } catch (cause) {
    if (!(cause instanceof FetchFailure)) throw cause
    const refused = cause.status === 401 || cause.status === 403
    throw new GuardError(
      'authorization_server_unavailable',
      refused
        ? `introspection at ${client.endpoint.href} refused the credentials of client ${client.clientId} (HTTP ${cause.status}): check introspection clientId and clientSecret`
        : `introspection at ${client.endpoint.href} ${cause.message}`,
    )
  }
  if (answer.active !== true)
    throw new GuardError('token_inactive', `introspection at ${client.endpoint.href} says not active`)
  if (answer.iss !== undefined && answer.iss !== client.issuer) {
    throw new GuardError(
      'issuer_untrusted',
      `introspection iss ${JSON.stringify(answer.iss)}, expected ${client.issuer}`,
    )
  }
  if (typeof answer.token_type === 'string' && answer.token_type.toLowerCase() === 'refresh_token') {
    throw new GuardError('token_type_invalid', 'a refresh token was presented as an access token')
  }
  const exp = answer.exp
  if (exp !== undefined && (typeof exp !== 'number' || !Number.isFinite(exp))) {
    throw new GuardError('claim_invalid', 'introspection "exp" is not a number')
  }
  if (exp !== undefined && exp <= now)
    throw new GuardError('token_expired', 'introspection exp is in the past')
  if (audiences) checkAudience(answer, audiences)
  checkScopeClaims(answer)
  const subject = checkOptionalString(answer, 'sub')
  const clientId = checkOptionalString(answer, 'client_id')
  return {
    token,
    issuer: client.issuer,
    subject,
    clientId,
    scopes: scopesOf(answer),
    audience: audiencesOf(answer),
    expiresAt: exp,
    claims: Object.freeze(answer),
    actor: actorOf(answer, subject, clientId),
    dpopJkt: checkConfirmation(answer),
    via: 'introspection',
  }
}
