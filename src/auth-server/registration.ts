import { createHash, randomBytes } from 'node:crypto'
import type Provider from 'oidc-provider'
import type { Configuration } from 'oidc-provider'
import { clientAddress, isLoopback } from '../guard/lib/http.ts'
import { sendOAuthError } from './errors.ts'
import type { ResolvedOptions } from './options.ts'
import { refusedOverLimit } from './rate_limit.ts'

type Middleware = Parameters<Provider['use']>[0]
type KoaContext = Parameters<Middleware>[0]

const BODY_LIMIT = 56 * 1024
const REFUSED_SCHEMES = new Set([
  'javascript:',
  'data:',
  'file:',
  'vbscript:',
  'blob:',
  'about:',
  'ws:',
  'wss:',
  'ftp:',
])
/**
 * The `client_id` of a self-registered client: 128 random bits in base64url, never starting with `-`, so that
 * an operator can type it after a command (`gatehouse clients show <id>`) without it being read as an option.
 * The provider's default (nanoid) starts with `-` once in 64.
 */
export function registeredClientId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url')
    if (id[0] !== '-') return id
  }
}

/** What a self-registered client may ask for: to act for a signed-in user, nothing else. */
const USER_CLIENT = {
  grant_types: new Set(['authorization_code', 'refresh_token']),
  response_types: new Set(['code']),
}

/**
 * What oidc-provider leaves to its host for open registration (RFC 7591): CORS for browser clients, a rate
 * limit per client IP, MCP's redirect URI rule, public clients by default (with no secret issued), and
 * idempotency: an identical public registration returns the client already registered instead of a new row,
 * so clients that re-register on every connection do not grow the table. It must be installed before
 * `provider.callback()` is first called: Koa composes the middleware then.
 */
export function registrationMiddleware(
  options: ResolvedOptions,
  provider: Provider,
  route: string,
): Middleware {
  const digests = options.store.oidcAdapter('RegistrationDigest')
  return async (ctx, next) => {
    if (ctx.path !== route) return next()
    ctx.set('access-control-allow-origin', '*')
    ctx.set('access-control-allow-methods', 'POST, OPTIONS')
    ctx.set('access-control-allow-headers', 'content-type, authorization, mcp-protocol-version')
    if (ctx.method === 'OPTIONS') {
      ctx.status = 204
      return
    }
    if (ctx.method !== 'POST') return next()
    if (
      await refusedOverLimit(
        ctx,
        options.store,
        `register:${clientAddress(ctx.req, options.proxy)}`,
        options.registration.rateLimit,
        'registrations',
      )
    ) {
      return
    }
    const raw = await readBody(ctx)
    if (!raw) return sendOAuthError(ctx, 'registration_too_large')
    const body = parseObject(raw)
    const request = ctx.req as typeof ctx.req & { body?: unknown }
    if (!body) {
      request.body = raw
      return next()
    }
    const problem = redirectUriProblem(body.redirect_uris)
    if (problem) return sendOAuthError(ctx, 'registration_redirect_uri_invalid', problem)
    const kind = userClientProblem(body)
    if (kind) return sendOAuthError(ctx, 'registration_metadata_invalid', kind)
    // With only `clientDefaults` saying `none`, the provider still issues a secret that then fails to authenticate.
    body.token_endpoint_auth_method ??= 'none'
    request.body = body
    if (body.token_endpoint_auth_method !== 'none') return next()

    const digest = createHash('sha256').update(canonicalJson(body)).digest('base64url')
    const known = await digests.find(digest)
    const client =
      typeof known?.clientId === 'string' ? await provider.Client.find(known.clientId) : undefined
    if (client) {
      ctx.set('cache-control', 'no-store')
      return reply(ctx, 201, client.metadata())
    }
    await next()
    const created = ctx.body as { client_id?: unknown } | undefined
    if (ctx.status === 201 && typeof created?.client_id === 'string') {
      await digests.upsert(digest, { clientId: created.client_id }, options.ttl.registeredClient)
    }
  }
}

/**
 * Registrations and metadata documents yield clients that act for a signed-in user (authorization code and
 * refresh): a client acting for itself (client credentials) is one the operator declared, with its own scopes.
 */
export function userClientProblem(metadata: Record<string, unknown>): string | undefined {
  for (const field of ['grant_types', 'response_types'] as const) {
    const values = metadata[field]
    if (values === undefined) continue
    if (!Array.isArray(values)) return `${field} must be an array`
    const refused = values.find((value) => !USER_CLIENT[field].has(value))
    if (refused !== undefined) {
      return `${field} value ${JSON.stringify(refused)} is not allowed for a self-registered client: use ${[
        ...USER_CLIENT[field],
      ].join(
        ', ',
      )} (a client acting for itself must be declared by the operator in authorization_server.clients)`
    }
  }
  return undefined
}

/**
 * A client that registered itself (a registration or a metadata document) may ask for any scope the server
 * knows. oidc-provider reads a client's `scope` as an allow-list, and MCP clients register with the scope of
 * their first challenge, so a later step-up for a tool's scope would fail with `invalid_scope`. The `scope`
 * they named is dropped whenever such a client is built (registered, loaded from the store, fetched); the
 * user's scope policy and consent decide what is granted. A declared client keeps its `scope` as its
 * allow-list: for a machine client it is all the client may have.
 */
export function selfRegisteredScopeOpen(
  declared: ReadonlyMap<string, unknown>,
): NonNullable<Configuration['extraClientMetadata']> {
  return {
    properties: ['scope'],
    validator: (_ctx, key, _value, metadata) => {
      if (key === 'scope' && !declared.has(metadata.client_id)) delete metadata.scope
    },
  }
}

/** MCP: redirect URIs are https or loopback; private-use schemes (`cursor://…`) stay allowed for native apps (RFC 8252 §7.1). */
export function redirectUriProblem(uris: unknown): string | undefined {
  if (uris === undefined) return undefined
  if (!Array.isArray(uris)) return 'redirect_uris must be an array of URLs'
  for (const uri of uris) {
    const url = typeof uri === 'string' ? URL.parse(uri) : null
    if (!url) return `redirect URI ${JSON.stringify(uri)} is not an absolute URL`
    if ((uri as string).includes('#')) return `redirect URI ${uri} must not have a fragment`
    if (url.username || url.password) return `redirect URI ${uri} must not have userinfo`
    if (REFUSED_SCHEMES.has(url.protocol)) return `redirect URI scheme ${url.protocol} is not allowed`
    if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
      return `redirect URI ${uri} must use https, or http on a loopback address (127.0.0.1, [::1], localhost)`
    }
  }
  return undefined
}

function reply(ctx: KoaContext, status: number, body: unknown) {
  ctx.status = status
  ctx.type = 'application/json'
  ctx.body = body
}

/** The body, or undefined past {@link BODY_LIMIT}. */
async function readBody(ctx: KoaContext): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length
    if (size > BODY_LIMIT) return undefined
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

function parseObject(raw: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(raw.toString('utf8'))
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

/** Key order does not change the digest, so the same client metadata matches however it is serialized. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}
