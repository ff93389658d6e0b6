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
  /**
   * `client` when the token was issued to a client acting for itself (the client credentials grant), with no
   * user behind it; see {@link actorOf}.
   */
  actor: 'user' | 'client'
  /** The DPoP key thumbprint the token is bound to (RFC 9449 `cnf.jkt`). */
  dpopJkt: string | undefined
  via: 'jwt' | 'introspection'
}

/** `gty` values that mark a client credentials token: Gatehouse's and Auth0's spellings. */
const CLIENT_GRANT_TYPES = new Set(['client_credentials', 'client-credentials'])

/**
 * Who a token acts for. A client credentials token is recognised by `gty` (Gatehouse, Auth0) or, per RFC 9068
 * §2.2, by a `sub` equal to its `client_id`. Not detected: a provider that issues such tokens with a `sub`
 * of its own and no `gty`; treat that provider's machine clients through their scopes.
 */
export function actorOf(
  claims: Record<string, unknown>,
  subject: string | undefined,
  clientId: string | undefined,
): 'user' | 'client' {
  if (typeof claims.gty === 'string' && CLIENT_GRANT_TYPES.has(claims.gty)) return 'client'
  return subject !== undefined && subject === clientId ? 'client' : 'user'
}

/** Scopes from `scope` (RFC 9068, space-delimited) or `scp` (Okta, Entra: an array or a string). */
export function scopesOf(claims: Record<string, unknown>): string[] {
  const raw = claims.scope ?? claims.scp
  if (typeof raw === 'string') return spaceDelimited(raw)
  if (Array.isArray(raw)) return raw.filter((s): s is string => typeof s === 'string')
  return []
}

/** The names in a space-delimited list, without the empty ones that extra spaces would make (split(' ') would). */
function spaceDelimited(list: string): string[] {
  const names: string[] = []
  let start = 0
  for (let space = list.indexOf(' '); space !== -1; space = list.indexOf(' ', start)) {
    if (space > start) names.push(list.slice(start, space))
    start = space + 1
  }
  if (start < list.length) names.push(list.slice(start))
  return names
}

export function audiencesOf(claims: Record<string, unknown>): string[] {
  const aud = claims.aud
  if (typeof aud === 'string') return [aud]
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string')
  return []
}
