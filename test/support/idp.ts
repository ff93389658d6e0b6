import { createPrivateKey, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignJWT } from 'jose'
import Provider, { errors as oidcErrors } from 'oidc-provider'
import { generateJwk } from '../../src/auth-server/keys.ts'

export interface TestIdp {
  /** The issuer, `http://127.0.0.1:<port>` plus the path given (default none). */
  issuer: string
  /** The private key the provider signs with, so tests can forge tokens with the provider's real key. */
  signingKey: KeyObject
  kid: string
  /** A JWT access token from the provider's own token endpoint (client credentials, `resource` bound). */
  issueToken(options?: { resource?: string; scope?: string }): Promise<string>
  client: { id: string; secret: string }
  /** Signs arbitrary claims and header with the provider's key: for hostile-token tests, never to stand in for a real provider. */
  sign(claims: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>
  close(): Promise<void>
  server: Server
}

export interface TestIdpOptions {
  /** Resources the provider issues JWT access tokens for, with their scopes. */
  resources: Record<string, string>
  path?: string
  alg?: 'ES256' | 'RS256' | 'EdDSA'
  accessTokenTtl?: number
  /** The client that may use client credentials; default `test-client` / `test-client-secret`. */
  client?: { id: string; secret: string }
  /** Default 0: a random free port. */
  port?: number
  /** The access tokens' `typ`; default `at+jwt` (RFC 9068). `JWT` is what Auth0, Okta, Entra and Keycloak issue. */
  accessTokenTyp?: string
}

/**
 * A test identity provider: a real `oidc-provider` on loopback that issues RFC 9068 JWT access
 * tokens (`typ: at+jwt`, `aud` = the requested resource) through client credentials. It stands in for the
 * operator's provider in tests; its in-memory state is lost when it stops.
 */
export async function startTestIdp(options: TestIdpOptions): Promise<TestIdp> {
  const client = options.client ?? { id: 'test-client', secret: 'test-client-secret' }
  const alg = options.alg ?? 'ES256'
  const jwk = generateJwk(alg)
  const { kid } = jwk
  const privateKey = createPrivateKey({ key: jwk, format: 'jwk' })

  const server = createServer()
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const path = options.path ?? ''
  const issuer = `http://127.0.0.1:${port}${path}`
  const allScopes = new Set(Object.values(options.resources).flatMap((s) => s.split(' ')))

  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    clients: [
      {
        client_id: client.id,
        client_secret: client.secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: [...allScopes].join(' '),
      },
    ],
    scopes: ['openid', 'offline_access', ...allScopes],
    features: {
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: (_ctx, resource) => {
          const scope = options.resources[resource]
          if (scope === undefined) throw new oidcErrors.InvalidTarget()
          return {
            scope,
            accessTokenFormat: 'jwt',
            accessTokenTTL: options.accessTokenTtl ?? 300,
            jwt: { sign: { alg } },
          }
        },
      },
    },
    ...(options.accessTokenTyp && {
      formats: {
        customizers: {
          jwt: (_ctx, _token, jwt) => {
            jwt.header = { typ: options.accessTokenTyp }
          },
        },
      },
    }),
    clientDefaults: { id_token_signed_response_alg: alg },
    ttl: { ClientCredentials: options.accessTokenTtl ?? 300 },
  })
  provider.on('server_error', (_ctx, error) => console.error('test IdP error', error))
  const callback = provider.callback()
  server.on('request', (req, res) => {
    if (path && req.url?.startsWith(path)) {
      ;(req as typeof req & { originalUrl?: string }).originalUrl = req.url
      req.url = req.url.slice(path.length) || '/'
    }
    callback(req, res)
  })

  return {
    issuer,
    signingKey: privateKey,
    kid,
    server,
    client,
    async issueToken({ resource = Object.keys(options.resources)[0], scope } = {}) {
      const body = new URLSearchParams({ grant_type: 'client_credentials', resource: resource as string })
      if (scope) body.set('scope', scope)
      const response = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`,
        },
        body,
      })
      const json = (await response.json()) as { access_token?: string }
      if (!response.ok || !json.access_token) throw new Error(`token request failed: ${JSON.stringify(json)}`)
      return json.access_token
    },
    sign(claims, header = {}) {
      return new SignJWT(claims).setProtectedHeader({ alg, typ: 'at+jwt', kid, ...header }).sign(privateKey)
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
