import { createHash, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createLocalJWKSet, type JWTPayload, jwtVerify } from 'jose'
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider'
import { generateJwk } from '../../src/auth-server/keys.ts'

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
export const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'

/** A client of the provider that may exchange; `auth` is how it authenticates at the token endpoint. */
export interface ExchangeClient {
  id: string
  secret?: string
  auth?: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt'
  /** Public keys, for `private_key_jwt`. */
  jwks?: { keys: Record<string, unknown>[] }
}

/** Which client may get tokens for which audience, with at most these scopes. */
export interface ExchangeRule {
  client: string
  audience: string
  scopes: string[]
}

export interface ExchangeRecord {
  grant: 'token-exchange' | 'on-behalf-of'
  client: string
  audience: string | undefined
  /** `granted`, or the OAuth error it answered. */
  outcome: string
}

export interface ExchangeIdp {
  issuer: string
  server: Server
  /** Every exchange the provider was asked for, in order. */
  exchanges: ExchangeRecord[]
  /** A user's access token for the MCP resource, through the code flow and the provider's own development pages. */
  signIn(user: string, scope: string, resource?: string): Promise<string>
  /** From now on, exchanges of this user's tokens issued until now are refused (`invalid_grant`), as after a sign-out. */
  revokeUser(user: string): void
  /** Exchanges arriving from now on wait until the returned function is called. */
  hold(): () => void
  close(): Promise<void>
}

export interface ExchangeIdpOptions {
  /** The MCP resource users sign in for, and the scopes it offers. */
  mcp: { resource: string; scopes: string[] }
  clients: ExchangeClient[]
  rules: ExchangeRule[]
  /** Lifetime of the users' MCP tokens, seconds; default 300. */
  accessTokenTtl?: number
}

const APP = { id: 'mcp-app', redirectUri: 'http://127.0.0.1:9/callback' }

/**
 * A real `oidc-provider` playing an external provider that exchanges tokens, as Auth0, Keycloak and Entra
 * do: RFC 8693 token exchange and Entra's on-behalf-of flow (the jwt-bearer grant with
 * `requested_token_use=on_behalf_of`, the API named by `<audience>/.default` in `scope`), both registered with
 * `provider.registerGrantType`. A subject token must be one of its own MCP access tokens (so an exchanged
 * token is never exchanged again); a rule must allow the client and audience; scopes only narrow. The
 * exchanged token is an RFC 9068 JWT with the user as `sub` and the client in `act`.
 */
export async function startExchangeIdp(options: ExchangeIdpOptions): Promise<ExchangeIdp> {
  const jwk = generateJwk('ES256')
  const publicJwk = createPublicKey(createPrivateKey({ key: jwk, format: 'jwk' })).export({ format: 'jwk' })
  const keys = createLocalJWKSet({ keys: [{ ...publicJwk, kid: jwk.kid, alg: 'ES256' }] })
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const exchanges: ExchangeRecord[] = []
  const revokedAt = new Map<string, number>()
  let gate: Promise<void> | undefined
  const ttl = options.accessTokenTtl ?? 300

  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    clients: [
      {
        client_id: APP.id,
        token_endpoint_auth_method: 'none',
        redirect_uris: [APP.redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
      ...options.clients.map((client) => ({
        client_id: client.id,
        ...(client.secret ? { client_secret: client.secret } : {}),
        ...(client.jwks ? { jwks: client.jwks, token_endpoint_auth_signing_alg: 'ES256' as const } : {}),
        token_endpoint_auth_method: client.auth ?? 'client_secret_basic',
        grant_types: [TOKEN_EXCHANGE, JWT_BEARER],
        redirect_uris: [],
        response_types: [],
      })),
    ],
    scopes: ['openid', ...options.mcp.scopes],
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: ttl, IdToken: 300 },
    features: {
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => options.mcp.resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== options.mcp.resource) throw new errors.InvalidTarget()
          return {
            scope: options.mcp.scopes.join(' '),
            accessTokenFormat: 'jwt',
            accessTokenTTL: ttl,
            jwt: { sign: { alg: 'ES256' } },
          }
        },
      },
    },
    extraTokenClaims: (_ctx, token) =>
      (token as { gty?: string }).gty?.includes('exchange') ? { act: { sub: token.clientId } } : undefined,
  })
  provider.on('server_error', (_ctx, error) => console.error('exchange IdP error', error))

  /** The subject token: one of this provider's MCP tokens, unexpired, its user not revoked since. */
  async function subjectOf(token: string | undefined, refuse: (why: string) => never) {
    if (!token) refuse('no subject token')
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token as string, keys, {
        issuer,
        typ: 'at+jwt',
        audience: options.mcp.resource,
      }))
    } catch (error) {
      return refuse(`the subject token is not acceptable (${(error as Error).message})`)
    }
    const revoked = revokedAt.get(payload.sub as string)
    if (revoked !== undefined && (payload.iat as number) <= revoked) {
      throw new errors.InvalidGrant('the subject token was revoked')
    }
    return {
      sub: payload.sub as string,
      exp: payload.exp as number,
      scopes: String(payload.scope ?? '').split(' '),
    }
  }

  async function issue(
    ctx: KoaContextWithOIDC,
    record: ExchangeRecord,
    subjectToken: string | undefined,
    requested: string | undefined,
  ) {
    const client = ctx.oidc.client as NonNullable<KoaContextWithOIDC['oidc']['client']>
    exchanges.push(record)
    try {
      if (gate) await gate
      const subject = await subjectOf(subjectToken, (why) => {
        throw new errors.InvalidRequest(why)
      })
      const rule = options.rules.find((r) => r.client === client.clientId && r.audience === record.audience)
      if (!rule) throw new errors.InvalidTarget(`${client.clientId} may not exchange for ${record.audience}`)
      const allowed = rule.scopes.filter((scope) => subject.scopes.includes(scope))
      const scopes = requested === undefined ? allowed : requested.split(' ').filter(Boolean)
      if (scopes.length === 0 || scopes.some((scope) => !allowed.includes(scope))) {
        throw new errors.InvalidScope('scopes only narrow', requested ?? '')
      }
      const expiresIn = Math.min(300, subject.exp - Math.floor(Date.now() / 1000))
      const token = new ctx.oidc.provider.AccessToken({
        accountId: subject.sub,
        client,
        scope: scopes.join(' '),
        gty: record.grant === 'token-exchange' ? 'token-exchange' : 'on-behalf-of-exchange',
        expiresIn,
        resourceServer: {
          audience: record.audience,
          scope: scopes.join(' '),
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        },
      } as never)
      ctx.body = {
        access_token: await token.save(),
        token_type: 'Bearer',
        expires_in: expiresIn,
        scope: scopes.join(' '),
        ...(record.grant === 'token-exchange' ? { issued_token_type: ACCESS_TOKEN } : {}),
      }
      record.outcome = 'granted'
    } catch (error) {
      record.outcome = (error as { error?: string }).error ?? 'server_error'
      throw error
    }
  }

  const param = (ctx: KoaContextWithOIDC, name: string) => {
    const value = (ctx.oidc.params as Record<string, unknown>)[name]
    return typeof value === 'string' && value !== '' ? value : undefined
  }

  provider.registerGrantType(
    TOKEN_EXCHANGE,
    async (ctx) => {
      if (param(ctx, 'subject_token_type') !== ACCESS_TOKEN)
        throw new errors.InvalidRequest('subject_token_type')
      const audience = param(ctx, 'audience') ?? param(ctx, 'resource')
      const record: ExchangeRecord = {
        grant: 'token-exchange',
        client: ctx.oidc.client?.clientId ?? '',
        audience,
        outcome: '',
      }
      await issue(ctx, record, param(ctx, 'subject_token'), param(ctx, 'scope'))
    },
    ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type'],
  )
  provider.registerGrantType(
    JWT_BEARER,
    async (ctx) => {
      if (param(ctx, 'requested_token_use') !== 'on_behalf_of')
        throw new errors.InvalidRequest('requested_token_use')
      // Entra names the API in the scope: `<application id URI>/.default` asks for what the rule allows.
      const scope = param(ctx, 'scope') ?? ''
      const audience = scope.endsWith('/.default') ? scope.slice(0, -'/.default'.length) : undefined
      const record: ExchangeRecord = {
        grant: 'on-behalf-of',
        client: ctx.oidc.client?.clientId ?? '',
        audience,
        outcome: '',
      }
      await issue(ctx, record, param(ctx, 'assertion'), undefined)
    },
    ['assertion', 'requested_token_use', 'scope'],
  )
  server.on('request', provider.callback())

  return {
    issuer,
    server,
    exchanges,
    signIn: (user, scope, resource = options.mcp.resource) => signIn(issuer, user, scope, resource),
    revokeUser: (user) => void revokedAt.set(user, Math.floor(Date.now() / 1000)),
    hold() {
      let release = () => {}
      gate = new Promise<void>((resolve) => {
        release = () => {
          gate = undefined
          resolve()
        }
      })
      return release
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** The authorization code flow as a browser goes through the provider's development pages: any login, consent given. */
async function signIn(issuer: string, user: string, scope: string, resource: string): Promise<string> {
  const verifier = randomBytes(32).toString('base64url')
  const cookies = new Map<string, string>()
  const go = async (url: string, body?: Record<string, string>) => {
    const response = await fetch(new URL(url, issuer), {
      method: body ? 'POST' : 'GET',
      redirect: 'manual',
      headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
      ...(body ? { body: new URLSearchParams(body) } : {}),
    })
    for (const line of response.headers.getSetCookie()) {
      const [pair = ''] = line.split(';')
      const at = pair.indexOf('=')
      cookies.set(pair.slice(0, at), pair.slice(at + 1))
    }
    await response.body?.cancel()
    return response.headers.get('location') ?? ''
  }
  let location = await go(
    `/auth?${new URLSearchParams({
      client_id: APP.id,
      response_type: 'code',
      redirect_uri: APP.redirectUri,
      scope,
      resource,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    })}`,
  )
  // The first interaction is the login, the next the consent; each returns to /auth, which leads on.
  let prompt = 'login'
  for (let step = 0; step < 6 && !location.startsWith(APP.redirectUri); step++) {
    if (!location.includes('/interaction/')) {
      location = await go(location)
      continue
    }
    location = await go(location, prompt === 'login' ? { prompt, login: user, password: 'x' } : { prompt })
    prompt = 'consent'
  }
  const code = new URL(location).searchParams.get('code')
  if (!code) throw new Error(`no code: ${location}`)
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: APP.redirectUri,
      code_verifier: verifier,
      client_id: APP.id,
      resource,
    }),
  })
  const body = (await response.json()) as { access_token?: string }
  if (!body.access_token) throw new Error(`token request failed: ${JSON.stringify(body)}`)
  return body.access_token
}
