import { GuardError } from '../errors.ts'

/** A NumericDate the guard accepts: a positive safe integer (floats, strings and 1e308 are refused). */
function numericDate(claims: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const value = claims[name]
  if (value === undefined && !required) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new GuardError(
      'claim_invalid',
      `"${name}" ${value === undefined ? 'is missing' : 'is not a positive integer NumericDate'}`,
    )
  }
  return value
}

export interface TimePolicy {
  now: number
  clockSkewSeconds: number
  maxLifetimeSeconds: number
}

/** `exp` required and in the future; `nbf` and `iat` not in the future; lifetime bounded. All within the skew. */
export function checkTimes(claims: Record<string, unknown>, policy: TimePolicy): number {
  const exp = numericDate(claims, 'exp', true) as number
  const nbf = numericDate(claims, 'nbf', false)
  const iat = numericDate(claims, 'iat', false)
  const { now, clockSkewSeconds: skew } = policy
  if (exp <= now - skew)
    throw new GuardError('token_expired', `expired at ${new Date(exp * 1000).toISOString()}`)
  if (nbf !== undefined && nbf > now + skew)
    throw new GuardError('token_not_yet_valid', `nbf is ${nbf - now} s ahead`)
  if (iat !== undefined && iat > now + skew)
    throw new GuardError('token_not_yet_valid', `iat is ${iat - now} s ahead`)
  const lifetime = exp - (iat ?? now)
  if (lifetime > policy.maxLifetimeSeconds) {
    throw new GuardError(
      'token_lifetime_too_long',
      `lifetime ${lifetime} s exceeds ${policy.maxLifetimeSeconds} s`,
    )
  }
  return exp
}

/**
 * Audiences are compared as strings, except that the scheme and host of a URL are compared without case
 * (MCP "Canonical Server URI": servers SHOULD accept uppercase scheme and host). A trailing slash, a port
 * or a different scheme still makes a different audience.
 */
export function normalizeAudience(value: string): string {
  const match = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^/?#]*)(.*)$/s.exec(value)
  if (!match) return value
  return `${(match[1] as string).toLowerCase()}${(match[2] as string).toLowerCase()}${match[3]}`
}

export function checkAudience(claims: Record<string, unknown>, accepted: ReadonlySet<string>): string[] {
  const aud = claims.aud
  const list = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined
  if (!list || list.length === 0 || !list.every((a) => typeof a === 'string')) {
    throw new GuardError(
      'audience_mismatch',
      aud === undefined ? 'the token has no "aud" claim' : '"aud" is malformed',
    )
  }
  // Most audiences arrive already normalized: the regex runs only for the rest.
  if (!list.some((a) => accepted.has(a) || accepted.has(normalizeAudience(a)))) {
    throw new GuardError(
      'audience_mismatch',
      `token aud ${JSON.stringify(aud)}, accepted ${JSON.stringify([...accepted])}: if this resource should accept ` +
        'that audience, add it to OAUTH_AUDIENCE (audiences); otherwise have the client request the resource',
    )
  }
  return list
}

export function checkOptionalString(claims: Record<string, unknown>, name: string): string | undefined {
  const value = claims[name]
  if (value !== undefined && typeof value !== 'string')
    throw new GuardError('claim_invalid', `"${name}" is not a string`)
  return value
}

/** `scope` must be a string; `scp` may be a string or an array of strings. */
export function checkScopeClaims(claims: Record<string, unknown>): void {
  if (claims.scope !== undefined && typeof claims.scope !== 'string') {
    throw new GuardError('claim_invalid', '"scope" is not a space-delimited string')
  }
  const scp = claims.scp
  if (
    scp !== undefined &&
    typeof scp !== 'string' &&
    !(Array.isArray(scp) && scp.every((s) => typeof s === 'string'))
  ) {
    throw new GuardError('claim_invalid', '"scp" is neither a string nor an array of strings')
  }
}

/** `cnf.jkt` of a DPoP-bound token (RFC 9449 §6.1). */
export function checkConfirmation(claims: Record<string, unknown>): string | undefined {
  const cnf = claims.cnf
  if (cnf === undefined) return undefined
  if (typeof cnf !== 'object' || cnf === null) throw new GuardError('claim_invalid', '"cnf" is not an object')
  const jkt = (cnf as Record<string, unknown>).jkt
  if (jkt === undefined) return undefined
  if (typeof jkt !== 'string' || jkt === '')
    throw new GuardError('claim_invalid', '"cnf.jkt" is not a string')
  return jkt
}
