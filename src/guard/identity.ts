/** What the guard knows about the caller once a token has passed every check. */
export interface VerifiedToken {
  /** The raw access token, for SDKs that expect it (the MCP SDK's `AuthInfo.token`). Never log it. */
  token: string
  issuer: string
  subject: string | undefined
  /** `client_id`, or `azp` where a provider uses that instead. */
  clientId: string | undefined
  scopes: string[]
  audience: string[]
  /** Seconds since the epoch; absent only for an introspected token whose server gave no `exp`. */
  expiresAt: number | undefined
  claims: Readonly<Record<string, unknown>>
  /** The DPoP key thumbprint the token is bound to (RFC 9449 `cnf.jkt`). */
  dpopJkt: string | undefined
  via: 'jwt' | 'introspection'
}

/** Scopes from `scope` (RFC 9068, space-delimited) or `scp` (Okta, Entra: an array or a string). */
export function scopesOf(claims: Record<string, unknown>): string[] {
  const raw = claims.scope ?? claims.scp
  if (typeof raw === 'string') return raw.split(' ').filter(Boolean)
  if (Array.isArray(raw)) return raw.filter((s): s is string => typeof s === 'string')
  return []
}

export function audiencesOf(claims: Record<string, unknown>): string[] {
  const aud = claims.aud
  if (typeof aud === 'string') return [aud]
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string')
  return []
}
