import { generateKeyPairSync } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider, { errors as oidcErrors } from 'oidc-provider'

export interface OpaqueIdp {
  /** `http://127.0.0.1:<port>` */
  issuer: string
  introspectionEndpoint: string
  /** The credentials of the resource server: the only client allowed to introspect. */
  resourceServer: { clientId: string; clientSecret: string }
  /** An opaque access token for the resource, from client credentials. */
  issueToken(options?: { scope?: string }): Promise<string>
  /** Revokes a token through RFC 7009, as the client that obtained it. */
  revoke(token: string): Promise<void>
  /** Introspection requests the provider has received. */
  readonly introspections: number
  server: Server
  close(): Promise<void>
}

export interface OpaqueIdpOptions {
  /** The resource the tokens are issued for, which becomes their `aud`. */
  resource: string
  /** Scopes the resource offers; default `tools:read`. */
  scope?: string
}

const CLIENT = { id: 'mcp-client', secret: 'mcp-client-secret' }
const RESOURCE_SERVER = { clientId: 'mcp-resource-server', clientSecret: 'mcp-resource-server-secret' }
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`

/**
 * A real `oidc-provider` that issues opaque (non-JWT) access tokens, like Auth0 without a default audience,
 * and answers RFC 7662 introspection to one resource-server client.
 */
export async function startOpaqueIdp(options: OpaqueIdpOptions): Promise<OpaqueIdp> {
  const scope = options.scope ?? 'tools:read'
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const provider = new Provider(issuer, {
    jwks: {
      keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'opaque-idp', alg: 'ES256', use: 'sig' }],
    },
    clients: [
      {
        client_id: CLIENT.id,
        client_secret: CLIENT.secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope,
      },
      {
        client_id: RESOURCE_SERVER.clientId,
        client_secret: RESOURCE_SERVER.clientSecret,
        grant_types: [],
        redirect_uris: [],
        response_types: [],
      },
    ],
    scopes: ['openid', ...scope.split(' ')],
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    ttl: { ClientCredentials: 300 },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx, client) => client.clientId === RESOURCE_SERVER.clientId,
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => client.clientId === token.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => options.resource,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== options.resource) throw new oidcErrors.InvalidTarget()
          return { scope, audience: resource, accessTokenFormat: 'opaque' }
        },
      },
    },
  })
  provider.on('server_error', (_ctx, error) => console.error('opaque test IdP error', error))
  let introspections = 0
  const callback = provider.callback()
  server.on('request', (req, res) => {
    if (req.url === '/token/introspection') introspections++
    callback(req, res)
  })

  const post = (path: string, body: URLSearchParams) =>
    fetch(`${issuer}${path}`, {
      method: 'POST',
      headers: { authorization: basic(CLIENT.id, CLIENT.secret) },
      body,
    })

  return {
    issuer,
    introspectionEndpoint: `${issuer}/token/introspection`,
    resourceServer: RESOURCE_SERVER,
    server,
    get introspections() {
      return introspections
    },
    async issueToken({ scope: requested } = {}) {
      const body = new URLSearchParams({ grant_type: 'client_credentials', resource: options.resource })
      if (requested) body.set('scope', requested)
      const response = await post('/token', body)
      const json = (await response.json()) as { access_token?: string }
      if (!response.ok || !json.access_token) throw new Error(`token request failed: ${JSON.stringify(json)}`)
      return json.access_token
    },
    async revoke(token) {
      const response = await post('/token/revocation', new URLSearchParams({ token }))
      if (!response.ok) throw new Error(`revocation failed with HTTP ${response.status}`)
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
