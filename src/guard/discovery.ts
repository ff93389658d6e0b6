import { GuardError } from './errors.ts'
import { assertSecureUrl, FetchFailure, fetchJson } from './lib/http.ts'

export interface AuthorizationServerMetadata {
  issuer: string
  jwks_uri?: string
  introspection_endpoint?: string
  [member: string]: unknown
}

export interface DiscoveryOptions {
  timeoutMs?: number
}

/**
 * The metadata URLs for an issuer, in the order MCP clients must try them (2025-11-25 and later,
 * "Authorization Server Metadata Discovery"): RFC 8414 path-inserted, OIDC path-inserted, OIDC appended.
 */
export function metadataUrls(issuer: string): URL[] {
  const url = new URL(issuer)
  const path = url.pathname.replace(/\/+$/, '')
  const origin = url.origin
  if (path === '') {
    return [
      new URL(`${origin}/.well-known/oauth-authorization-server`),
      new URL(`${origin}/.well-known/openid-configuration`),
    ]
  }
  return [
    new URL(`${origin}/.well-known/oauth-authorization-server${path}`),
    new URL(`${origin}/.well-known/openid-configuration${path}`),
    new URL(`${origin}${path}/.well-known/openid-configuration`),
  ]
}

/**
 * Finds the authorization server metadata for `issuer`. The first document that answers 200 must carry an
 * `issuer` identical to the configured one (RFC 8414 §3.3), byte for byte; otherwise discovery fails.
 */
export async function discoverAuthorizationServer(
  issuer: string,
  options: DiscoveryOptions = {},
): Promise<AuthorizationServerMetadata> {
  const attempts: string[] = []
  for (const url of metadataUrls(issuer)) {
    let document: Record<string, unknown>
    try {
      assertSecureUrl(url, 'metadata URL')
      document = await fetchJson(url, { timeoutMs: options.timeoutMs ?? 5000, maxBytes: 256 * 1024 })
    } catch (cause) {
      if (!(cause instanceof FetchFailure)) throw cause
      attempts.push(`${url.href}: ${cause.message}`)
      continue
    }
    if (document.issuer !== issuer) {
      throw new GuardError('discovery_failed', issuerMismatch(issuer, document.issuer, url))
    }
    for (const member of ['jwks_uri', 'introspection_endpoint'] as const) {
      if (document[member] !== undefined && typeof document[member] !== 'string') {
        throw new GuardError('discovery_failed', `${url.href}: "${member}" is not a string`)
      }
    }
    return document as AuthorizationServerMetadata
  }
  throw new GuardError(
    'discovery_failed',
    `no metadata found for issuer ${issuer}; tried ${attempts.join('; ')}. Check OAUTH_ISSUER_URL: it must be the issuer exactly as the provider publishes it`,
  )
}

function issuerMismatch(expected: string, actual: unknown, url: URL): string {
  const hint =
    typeof actual === 'string' && actual.replace(/\/$/, '') === expected.replace(/\/$/, '')
      ? ' They differ only by a trailing slash: set the issuer URL exactly as the provider writes it.'
      : ''
  return `${url.href} declares issuer ${JSON.stringify(actual)}, but the configured issuer is ${JSON.stringify(expected)}.${hint}`
}
