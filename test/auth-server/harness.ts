import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type AuthorizationServer,
  type AuthorizationServerOptions,
  createAuthorizationServer,
} from '../../src/auth-server/index.ts'
import { openStore } from '../../src/storage/open.ts'
import type { Store } from '../../src/storage/store.ts'
import { capturingLogger } from '../support/capturing_logger.ts'

export const SECRET = 'test-secret-test-secret-test-secret-0123'

export interface Harness {
  origin: string
  issuer: string
  resource: string
  other: string
  store: Store
  /** The store's URL, for the admin CLI (`GATEHOUSE_STORAGE_URL`). */
  storeUrl: string
  server: Server
  auth: AuthorizationServer
  logger: ReturnType<typeof capturingLogger>
  /** Replaces the authorization server behind the same origin (a restart on the same store). */
  restart(overrides?: Partial<AuthorizationServerOptions>): Promise<void>
  close(): Promise<void>
}

/**
 * A real authorization server on a random loopback port over a real SQLite store (or the store at
 * `storageUrl`), mounted the way the gateway mounts it: its `handle` first, a 404 for what it leaves. Two
 * resources: `/mcp` (the default) and `/other`.
 */
export async function startAuthServer(
  options: { path?: string; overrides?: Partial<AuthorizationServerOptions>; storageUrl?: string } = {},
): Promise<Harness> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-as-'))
  const storeUrl = options.storageUrl ?? `sqlite:${join(dataDir, 'as.db')}`
  const store = await openStore(storeUrl, { dataDir })
  const logger = capturingLogger()
  let auth: AuthorizationServer | undefined
  const server = createServer(async (req, res) => {
    if (!auth || !(await auth.handle(req, res))) {
      res.writeHead(404).end('not the authorization server')
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const issuer = `${origin}${options.path ?? ''}`
  const resource = `${origin}/mcp`
  const other = `${origin}/other`
  const build = (overrides: Partial<AuthorizationServerOptions> = {}) =>
    createAuthorizationServer({
      issuer,
      store,
      secret: SECRET,
      logger,
      resources: [
        { url: resource, scopes: ['mcp:read', 'mcp:write'], default: true },
        { url: other, scopes: ['other:read'] },
      ],
      clients: [
        {
          client_id: 'machine',
          client_secret: 'machine-secret-machine-secret',
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          scope: 'mcp:read other:read',
        },
        {
          client_id: 'resource-server',
          client_secret: 'resource-server-secret-0123456',
          grant_types: [],
          redirect_uris: [],
          response_types: [],
          resource_server: true,
        },
      ],
      ...options.overrides,
      ...overrides,
    })
  auth = await build()
  return {
    origin,
    issuer,
    resource,
    other,
    store,
    storeUrl,
    server,
    logger,
    get auth() {
      return auth as AuthorizationServer
    },
    async restart(overrides) {
      auth = await build(overrides)
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await store.close()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

export interface Pkce {
  verifier: string
  challenge: string
}

export function pkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
}

/** A browser's cookie handling, enough for the provider's interaction and session cookies. */
export class CookieJar {
  readonly #cookies = new Map<string, string>()

  header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  }

  store(response: Response) {
    for (const cookie of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = cookie.split(';')
      const at = pair.indexOf('=')
      const name = pair.slice(0, at).trim()
      const expired = attributes.some(
        (a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a) || /^\s*max-age=0\b/i.test(a),
      )
      if (expired) this.#cookies.delete(name)
      else this.#cookies.set(name, pair.slice(at + 1).trim())
    }
  }
}

/**
 * Follows the provider's redirects (interaction, resume) like a browser until the response leaves the
 * authorization server; returns that last response (a redirect to the client, or an error page).
 */
export async function browse(start: string, jar = new CookieJar()): Promise<Response> {
  let url = start
  for (let hop = 0; hop < 12; hop++) {
    const response = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } })
    jar.store(response)
    const location = response.headers.get('location')
    if (response.status < 300 || response.status >= 400 || !location) return response
    const next = new URL(location, url)
    if (next.origin !== new URL(start).origin || next.pathname.endsWith('/callback')) return response
    await response.arrayBuffer()
    url = next.href
  }
  throw new Error('too many redirects')
}

export async function register(
  h: Harness,
  metadata: Record<string, unknown>,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${h.issuer}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(metadata),
  })
  return { response, body: (await response.json()) as Record<string, unknown> }
}

/** An MCP-style public native client with a loopback callback; the port is chosen at authorization time. */
export async function registerPublicClient(h: Harness, extra: Record<string, unknown> = {}) {
  const { response, body } = await register(h, {
    client_name: `test client ${randomBytes(4).toString('hex')}`,
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    scope: 'mcp:read mcp:write',
    ...extra,
  })
  if (response.status !== 201) throw new Error(`registration failed: ${JSON.stringify(body)}`)
  return body.client_id as string
}

export function randomLoopbackCallback(): string {
  return `http://127.0.0.1:${20_000 + Math.floor(Math.random() * 40_000)}/callback`
}

export function authorizeUrl(h: Harness, params: Record<string, string | undefined>): string {
  const url = new URL(`${h.issuer}/authorize`)
  for (const [key, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(key, value)
  return url.href
}

/** The whole authorization step: returns the code from the redirect to the client, with the callback URL. */
export async function authorize(
  h: Harness,
  clientId: string,
  options: { resource?: string; scope?: string; pkce?: Pkce; redirectUri?: string } = {},
) {
  const challenge = options.pkce ?? pkce()
  const redirectUri = options.redirectUri ?? randomLoopbackCallback()
  const state = randomBytes(8).toString('hex')
  const response = await browse(
    authorizeUrl(h, {
      client_id: clientId,
      response_type: 'code',
      redirect_uri: redirectUri,
      scope: options.scope ?? 'mcp:read',
      resource: options.resource ?? h.resource,
      state,
      code_challenge: challenge.challenge,
      code_challenge_method: 'S256',
    }),
  )
  const location = new URL(response.headers.get('location') ?? 'about:blank')
  const code = location.searchParams.get('code')
  if (!code) throw new Error(`no code: ${response.status} ${location.href}`)
  return { code, redirectUri, state, location, verifier: challenge.verifier }
}

export async function token(
  h: Harness,
  params: Record<string, string>,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${h.issuer}/token`, {
    method: 'POST',
    headers,
    body: new URLSearchParams(params),
  })
  return { response, body: (await response.json()) as Record<string, string> }
}

export function basic(id: string, secret: string) {
  return { authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` }
}

/** Authorization, then the code for tokens: the normal first connection of an MCP client. */
export async function connect(h: Harness, clientId: string, resource = h.resource) {
  const { code, redirectUri, verifier } = await authorize(h, clientId, { resource })
  const { response, body } = await token(h, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    client_id: clientId,
    resource,
  })
  if (response.status !== 200) throw new Error(`token request failed: ${JSON.stringify(body)}`)
  return body
}
