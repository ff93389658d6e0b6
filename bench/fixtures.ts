import { randomUUID } from 'node:crypto'
import { createGuard, type Guard } from '../src/guard/index.ts'
import { startTestIdp, type TestIdp } from '../test/support/idp.ts'

export const RESOURCE = 'https://mcp.example.com/mcp'
export const SCOPE = 'tools:read tools:call'
export const ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const
export type BenchAlgorithm = (typeof ALGORITHMS)[number]

/** A real oidc-provider on loopback: the guard discovers it and fetches its JWKS like in production. */
export function startIssuer(alg: BenchAlgorithm): Promise<TestIdp> {
  return startTestIdp({ resources: { [RESOURCE]: SCOPE }, alg })
}

/** The claims of an RFC 9068 access token, as a provider issues them for one MCP resource. */
export function accessTokenClaims(issuer: string): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return {
    iss: issuer,
    sub: 'user-4821',
    aud: RESOURCE,
    client_id: 'bench-client',
    scope: SCOPE,
    iat: now,
    exp: now + 3600,
    jti: randomUUID(),
  }
}

/** `cacheSeconds` undefined keeps the guard's defaults (60 s, 10,000 entries). */
export function guardFor(idp: TestIdp, cacheSeconds?: number): Promise<Guard> {
  return createGuard({
    resource: RESOURCE,
    authorizationServers: [{ issuer: idp.issuer }],
    ...(cacheSeconds === undefined ? {} : { cacheSeconds }),
  })
}
