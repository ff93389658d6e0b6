import type { GuardError } from './errors.ts'

export interface ChallengeParameters {
  scheme: 'Bearer' | 'DPoP'
  resourceMetadata: string
  scopes: readonly string[]
  error?: GuardError | undefined
  /** For DPoP challenges (RFC 9449 §7.1). */
  algorithms?: readonly string[]
}

/**
 * A `WWW-Authenticate` value on one line. With no error (no token was sent) it carries only
 * `resource_metadata` and `scope`, as RFC 6750 §3 asks; otherwise `error` and the fixed public description.
 */
export function formatChallenge(challenge: ChallengeParameters): string {
  const params: [string, string][] = []
  if (challenge.error?.oauthError) {
    params.push(
      ['error', challenge.error.oauthError],
      ['error_description', challenge.error.publicDescription],
    )
  }
  if (challenge.scopes.length > 0) params.push(['scope', challenge.scopes.join(' ')])
  params.push(['resource_metadata', challenge.resourceMetadata])
  if (challenge.scheme === 'DPoP' && challenge.algorithms?.length)
    params.push(['algs', challenge.algorithms.join(' ')])
  return `${challenge.scheme} ${params.map(([k, v]) => `${k}="${quote(v)}"`).join(', ')}`
}

// Values sit inside a quoted-string: an unescaped `"` or `\` would end it early (RFC 9110 §5.6.4).
const quote = (value: string): string => value.replace(/[\\"]/g, '\\$&').replace(/[\r\n]/g, ' ')
