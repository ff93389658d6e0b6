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
export function formatChallenge(p: ChallengeParameters): string {
  const params: [string, string][] = []
  if (p.error?.oauthError) {
    params.push(['error', p.error.oauthError], ['error_description', p.error.publicDescription])
  }
  if (p.scopes.length > 0) params.push(['scope', p.scopes.join(' ')])
  params.push(['resource_metadata', p.resourceMetadata])
  if (p.scheme === 'DPoP' && p.algorithms?.length) params.push(['algs', p.algorithms.join(' ')])
  return `${p.scheme} ${params.map(([k, v]) => `${k}="${quote(v)}"`).join(', ')}`
}

// Values sit inside a quoted-string: an unescaped `"` or `\` would end it early (RFC 9110 §5.6.4).
const quote = (value: string): string => value.replace(/[\\"]/g, '\\$&').replace(/[\r\n]/g, ' ')
