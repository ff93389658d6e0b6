import { readFileSync } from 'node:fs'
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { AuthorizationServer } from '../auth-server/index.ts'
import { isLoopback } from '../config/embedded.ts'
import {
  createGuard,
  type Guard,
  type GuardOptions,
  type GuardResult,
  type AuthorizationServerOptions as TrustedServer,
  type VerifiedToken,
} from '../guard/index.ts'
import type { Store } from '../storage/store.ts'
import type { GatewayConfig } from './config.ts'
import { type CredentialMode, credentialMode } from './credentials/index.ts'
import {
  BodyTooLarge,
  guardRequest,
  readBody,
  sendJson,
  sendRpcError,
  sendWebResponse,
  singleId,
} from './http.ts'
import { principalOf } from './identity.ts'
import { isStatelessEra, type JsonRpcMessage, parseJsonRpcBody, RPC } from './jsonrpc.ts'
import { createGatewayLogger, guardLogger, redactUrl } from './logger.ts'
import { GatewayMetrics } from './metrics.ts'
import { isDiscoveryOnly, ToolPolicy } from './policy.ts'
import { HttpUpstream } from './proxy.ts'
import { SessionRegistry } from './sessions.ts'
import { StdioUpstream } from './stdio/bridge.ts'
import type { McpExchange, Upstream } from './upstream.ts'

/** A POST's JSON-RPC body, strictly parsed; empty for other requests. */
interface RequestBody {
  bytes: Buffer
  messages: JsonRpcMessage[]
  batch: boolean
}

const NO_BODY: RequestBody = { bytes: Buffer.alloc(0), messages: [], batch: false }
const MAX_HEADERS = 100
/** Node's default, set explicitly so that `--max-http-header-size` in NODE_OPTIONS cannot raise it. */
const MAX_HEADER_BYTES = 16_384

/**
 * What a peer may hold before it is known: time to send its headers and its whole request (Node checks both
 * every `connectionsCheckingInterval`, 30 s by default, which would stretch them by as much), and an idle
 * keep-alive connection. None of these limits a response: an SSE stream lasts as long as it is used.
 */
function serverOptions(limits: GatewayConfig['limits']) {
  const shortest = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs)
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(shortest / 4))),
    maxHeaderSize: MAX_HEADER_BYTES,
  }
}

export interface Gateway {
  /** The canonical MCP URL. */
  resource: string
  server: Server
  guard: Guard
  metrics: GatewayMetrics
  /** The embedded authorization server on the same origin, when no external one is configured. */
  authorizationServer: EmbeddedAuthorization | undefined
  /** Stops accepting, lets open requests and streams finish for the grace period, then stops the upstream. */
  close(): Promise<void>
}

/** Sent to an allowed browser origin, which is echoed in `access-control-allow-origin` (`vary: origin`). */
const CORS = {
  'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
  'access-control-allow-headers':
    'authorization, dpop, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id, mcp-method, mcp-name',
  'access-control-expose-headers': 'mcp-session-id, mcp-protocol-version, www-authenticate',
}

/**
 * Starts `gatehouse serve`: listens, builds the guard for the canonical URL (discovery and JWKS must
 * succeed, or it does not start), and serves the MCP endpoint, the resource metadata and the
 * operational endpoints on one port.
 */
/** The embedded authorization server on the gateway's origin: it answers its own paths first, and the guard trusts it. */
export interface EmbeddedAuthorization {
  auth: AuthorizationServer
  store: Store
  /** The guard's entry for it, with its keys read in process. */
  trusted: TrustedServer
  /** The guard's `isRevoked`: its access tokens revoked before they expire (consents revoked, users disabled). */
  isRevoked: NonNullable<GuardOptions['isRevoked']>
  close(): Promise<void>
}

/** Starts the embedded authorization server for the canonical MCP URL and the scopes the guard publishes. */
export type StartAuthorizationServer = (resource: {
  url: string
  scopes: readonly string[]
}) => Promise<EmbeddedAuthorization>

export async function startGateway(
  config: GatewayConfig,
  options: { logger?: Logger; authorizationServer?: StartAuthorizationServer } = {},
): Promise<Gateway> {
  const logger = options.logger ?? createGatewayLogger(config.logLevel)
  const server = config.tls
    ? createHttpsServer({
        cert: readFileSync(config.tls.cert),
        key: readFileSync(config.tls.key),
        handshakeTimeout: config.limits.headersTimeoutMs,
        ...serverOptions(config.limits),
      })
    : createHttpServer(serverOptions(config.limits))
  // Node keeps the first this many header lines and drops the rest; an MCP request needs about a dozen.
  server.maxHeadersCount = MAX_HEADERS
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined
  server.on('request', (req, res) => {
    if (handler) handler(req, res)
    else sendJson(res, 503, { error: 'starting' })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.address, () => {
      server.off('error', reject)
      resolve()
    })
  })
  let authorizationServer: EmbeddedAuthorization | undefined
  try {
    const port = (server.address() as AddressInfo).port
    const host = config.address.includes(':') ? `[${config.address}]` : config.address
    const resource = config.publicUrl ?? `${config.tls ? 'https' : 'http'}://${host}:${port}/mcp`
    const guardOptions = config.guardOptions(resource)
    // Default tool scopes are basic use: published, and kept in step-up challenges for other tools.
    const scopesSupported = guardOptions.scopesSupported ?? [
      ...new Set([...(guardOptions.scopes ?? []), ...config.defaultToolScopes]),
    ]
    if (config.authorizationServer) {
      if (!options.authorizationServer) throw new Error('the embedded authorization server has no starter')
      authorizationServer = await options.authorizationServer({
        url: guardOptions.resource,
        scopes: [...scopesSupported, ...Object.values(config.tools).flat()],
      })
    }
    const guard = await createGuard({
      ...guardOptions,
      scopesSupported,
      ...(authorizationServer
        ? { authorizationServers: [authorizationServer.trusted], isRevoked: authorizationServer.isRevoked }
        : {}),
      logger: guardLogger(logger),
    })
    const gateway = new GatewayHandler(config, guard, logger, authorizationServer, port)
    handler = (req, res) => void gateway.handle(req, res)
    logger.info(
      {
        resource,
        upstream: config.upstream.kind === 'http' ? config.upstream.url.href : config.upstream.command,
      },
      'gatehouse gateway listening',
    )
    return {
      resource,
      server,
      guard,
      metrics: gateway.metrics,
      authorizationServer,
      close: async () => {
        await gateway.close(server)
        await authorizationServer?.close()
      },
    }
  } catch (error) {
    server.close()
    await authorizationServer?.close()
    throw error
  }
}

class GatewayHandler {
  readonly metrics = new GatewayMetrics()
  readonly #config: GatewayConfig
  readonly #guard: Guard
  readonly #logger: Logger
  readonly #origin: string
  readonly #mcpPath: string
  readonly #sessions: SessionRegistry
  readonly #policy: ToolPolicy
  readonly #credentials: CredentialMode
  readonly #upstream: Upstream
  readonly #authorizationServer: EmbeddedAuthorization | undefined
  readonly #reaper: NodeJS.Timeout
  /** The public origin and `allowed_origins`: the browser origins the MCP endpoint serves. */
  readonly #allowedOrigins: ReadonlySet<string>
  /** On a loopback bind, the `Host` values this gateway answers to; `undefined` elsewhere (any). */
  readonly #allowedHosts: ReadonlySet<string> | undefined
  #closing = false
  /** Anonymous request bodies being read now, against `limits.max_anonymous_body_reads`. */
  #anonymousReads = 0

  constructor(
    config: GatewayConfig,
    guard: Guard,
    logger: Logger,
    authorizationServer: EmbeddedAuthorization | undefined,
    port: number,
  ) {
    this.#config = config
    this.#authorizationServer = authorizationServer
    this.#guard = guard
    this.#logger = logger
    const resource = new URL(guard.resource)
    this.#origin = resource.origin
    this.#mcpPath = resource.pathname
    this.#allowedOrigins = new Set([resource.origin, ...config.allowedOrigins])
    this.#allowedHosts = isLoopback(config.address) ? loopbackHosts(resource, port) : undefined
    this.#sessions = new SessionRegistry(config.sessions, this.metrics)
    this.#policy = new ToolPolicy(config, guard)
    const upstream = config.upstream
    this.#credentials = credentialMode(config.upstreamCredentials, {
      resource: guard.resource,
      upstream: upstream.kind === 'http' ? upstream.url.href : `stdio:${upstream.command}`,
    })
    const shared = {
      policy: this.#policy,
      sessions: this.#sessions,
      metrics: this.metrics,
      logger,
      timeoutMs: config.limits.upstreamTimeoutMs,
      streamIdleTimeoutMs: config.limits.streamIdleTimeoutMs,
    }
    this.#upstream =
      upstream.kind === 'http'
        ? new HttpUpstream({
            ...shared,
            url: upstream.url,
            credentials: this.#credentials,
            maxBodyBytes: config.limits.maxBodyBytes * 16,
          })
        : new StdioUpstream({ ...shared, ...upstream, maxMessageBytes: config.limits.maxBodyBytes * 16 })
    if (this.#credentials.startupWarning) logger.warn(this.#credentials.startupWarning)
    const idleMs = config.sessions.idleTimeoutSeconds * 1000
    this.#reaper = setInterval(() => this.#reap(idleMs), Math.min(idleMs, 30_000))
    this.#reaper.unref()
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', this.#origin).pathname
    // Checked first: the log object would otherwise be built on every request for nothing.
    if (this.#logger.isLevelEnabled('debug'))
      this.#logger.debug(
        {
          req: { method: req.method, url: redactUrl(req.url), headers: req.headers },
          from: this.#client(req),
        },
        'request',
      )
    try {
      if (this.#refusedHost(req, res)) return
      // The authorization server owns its paths on this origin (the 2025-03-26 /authorize, /token, /register
      // fallbacks, its discovery documents, the sign-in pages); the MCP path is never one of them.
      if (this.#authorizationServer && (await this.#authorizationServer.auth.handle(req, res))) return
      if (path === this.#mcpPath) {
        res.on('close', () =>
          this.metrics.requests.inc({ method: req.method ?? '', status: String(res.statusCode) }),
        )
        await this.#mcp(req, res)
        return
      }
      await this.#other(req, res, path)
    } catch (error) {
      this.#logger.error({ err: error }, 'request failed')
      sendRpcError(res, 500, RPC.internalError, 'internal error in the gateway')
    }
  }

  async close(server: Server): Promise<void> {
    this.#closing = true
    clearInterval(this.#reaper)
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeIdleConnections()
    await this.#upstream.close(this.#config.limits.shutdownGraceMs)
    server.closeAllConnections()
    await closed
  }

  async #other(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' })
    if (path === '/readyz') {
      const ready = !this.#closing && this.#upstream.ready()
      return sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' })
    }
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
      res.end(this.metrics.render())
      return
    }
    const published = this.#credentials.published.get(path)
    if (published !== undefined)
      return sendJson(res, 200, published, { 'cache-control': 'public, max-age=60' })
    const metadata = this.#guard.metadataResponse(guardRequest(req, this.#origin))
    if (metadata) return sendWebResponse(res, metadata)
    sendJson(res, 404, { error: 'not_found' })
  }

  async #mcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET'
    if (this.#refusedOrigin(req, res)) return
    if (method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-max-age': '86400' }).end()
      return
    }
    if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
      return sendRpcError(
        res,
        405,
        RPC.connectionClosed,
        `method ${method} is not allowed on the MCP endpoint`,
      )
    }
    if (this.#closing) return sendRpcError(res, 503, RPC.connectionClosed, 'the gateway is shutting down')
    const exchange = await this.#readExchange(req, res)
    if (exchange === undefined) return
    if (method === 'POST') await this.#upstream.post(exchange)
    else if (method === 'GET') await this.#upstream.get(exchange)
    else await this.#upstream.delete(exchange)
  }

  /**
   * Authorizes and reads a request, in the order that keeps unknown callers cheap: the token, from the
   * headers, before the body, so the body of a caller without a valid token is never read; then the body
   * (bounded) and its strict parse; then the scopes its tool calls need; then the session. With anonymous
   * discovery on, a request without any Authorization header has its body read within the much smaller
   * anonymous limit, to learn whether it is discovery only.
   */
  async #readExchange(req: IncomingMessage, res: ServerResponse): Promise<McpExchange | undefined> {
    const request = guardRequest(req, this.#origin)
    const maybeAnonymous = this.#config.allowAnonymousDiscovery && req.headers.authorization === undefined
    let token = maybeAnonymous ? undefined : await this.#authenticate(request, req, res)
    if (!maybeAnonymous && token === undefined) return undefined
    const read = await this.#body(req, res, token !== undefined)
    if (read === undefined) return undefined
    const body = read === TOO_LARGE ? NO_BODY : read
    const { messages } = body
    if (token === undefined && !isDiscoveryOnly(messages)) {
      token = await this.#authenticate(request, req, res)
      if (token === undefined) return undefined
    }
    if (token !== undefined && !(await this.#authorized(request, token, messages, res))) return undefined
    if (req.method === 'POST' && !isJson(req)) {
      sendRpcError(res, 415, RPC.invalidRequest, 'Unsupported Media Type: the body must be application/json')
      return undefined
    }
    const headerMismatch = this.#routingHeaderMismatch(req, messages)
    if (headerMismatch) {
      sendRpcError(res, 400, RPC.headerMismatch, headerMismatch, singleId(messages))
      return undefined
    }
    const principal = token === undefined ? undefined : principalOf(token)
    const sessionId = this.#sessionOf(req, res, principal?.key, messages)
    if (sessionId === null) return undefined
    return { req, res, principal, sessionId, body: body.bytes, messages, batch: body.batch }
  }

  /** The verified token of the request, or `undefined` once it is refused (401, or 403 for DPoP and the like). */
  async #authenticate(
    request: Request,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<VerifiedToken | undefined> {
    const result = await this.#guard.checkToken(request)
    if (result.ok) return result.token
    // The body is not read for an unknown caller: the connection ends with the answer instead.
    if (!req.complete) res.setHeader('connection', 'close')
    await this.#refuse(res, result)
    return undefined
  }

  /** Whether the token holds the scopes of the guard and of every tool the body calls, and may call them. */
  async #authorized(
    request: Request,
    token: VerifiedToken,
    messages: JsonRpcMessage[],
    res: ServerResponse,
  ): Promise<boolean> {
    const result = this.#guard.checkScopes(request, token, { scopes: this.#policy.requiredScopes(messages) })
    if (!result.ok) {
      await this.#refuse(res, result)
      return false
    }
    const refusal = this.#policy.machineRefusal(messages, token)
    if (refusal === undefined) return true
    this.metrics.authFailures.inc({ reason: 'machine_client_refused' })
    sendRpcError(res, 403, RPC.invalidRequest, refusal, singleId(messages))
    return false
  }

  async #refuse(res: ServerResponse, result: GuardResult & { ok: false }): Promise<void> {
    this.metrics.authFailures.inc({ reason: result.error.code })
    await sendWebResponse(res, result.response)
  }

  /**
   * The body of a JSON POST, read within the caller's limit (`authenticated`: the token is valid) and strictly
   * parsed, or `TOO_LARGE` for an anonymous body over its limit (then it is not discovery, and is refused as
   * unauthenticated); `undefined` once the request is answered (413, 400, or 503 when too many anonymous
   * bodies are being read already).
   */
  async #body(
    req: IncomingMessage,
    res: ServerResponse,
    authenticated: boolean,
  ): Promise<RequestBody | typeof TOO_LARGE | undefined> {
    if (req.method !== 'POST' || !isJson(req)) return NO_BODY
    const { maxBodyBytes, maxAnonymousBodyBytes, maxAnonymousBodyReads } = this.#config.limits
    if (!authenticated && this.#anonymousReads >= maxAnonymousBodyReads) {
      res.setHeader('connection', 'close')
      res.setHeader('retry-after', '5')
      sendRpcError(res, 503, RPC.connectionClosed, 'too many requests without a token; try again later')
      return undefined
    }
    let bytes: Buffer
    if (!authenticated) this.#anonymousReads += 1
    try {
      bytes = await readBody(req, authenticated ? maxBodyBytes : maxAnonymousBodyBytes)
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error
      res.setHeader('connection', 'close')
      if (!authenticated) return TOO_LARGE
      sendRpcError(res, 413, RPC.invalidRequest, `the request body exceeds ${maxBodyBytes} bytes`)
      return undefined
    } finally {
      if (!authenticated) this.#anonymousReads -= 1
    }
    const parsed = parseJsonRpcBody(bytes, this.#config.limits.maxBatchMessages)
    // Refused before the upstream sees anything: the bytes that go on must read as authorized.
    if (!parsed.ok) {
      sendRpcError(res, 400, parsed.code, parsed.message)
      return undefined
    }
    return { bytes, messages: parsed.messages, batch: parsed.batch }
  }

  /**
   * The session the request belongs to (`undefined`: none, or an `initialize` admitted to open one), or
   * `null` once refused: an id unknown or of another subject (404), no room or too fast for a new one
   * (503 or 429 with Retry-After).
   */
  #sessionOf(
    req: IncomingMessage,
    res: ServerResponse,
    owner: string | undefined,
    messages: JsonRpcMessage[],
  ): string | undefined | null {
    // The stateless era has no sessions: a stray Mcp-Session-Id is ignored, and never forwarded unchecked.
    const sessionId = isStatelessEra(req.headers['mcp-protocol-version'])
      ? undefined
      : req.headers['mcp-session-id']
    if (typeof sessionId === 'string') {
      if (this.#sessions.use(sessionId, owner) === 'ok') return sessionId
      sendRpcError(res, 404, RPC.connectionClosed, 'Session not found', singleId(messages))
      return null
    }
    if (!messages.some((m) => m.method === 'initialize')) return undefined
    const refusal = this.#sessions.admit(owner, res)
    if (refusal === undefined) return undefined
    res.setHeader('retry-after', String(refusal.retryAfterSeconds))
    sendRpcError(res, refusal.status, RPC.connectionClosed, refusal.message, singleId(messages))
    return null
  }

  /**
   * 2026-07-28 requests name their method (and tool) in headers so intermediaries can route without the
   * body. The gateway authorizes on the body, so the two must agree or an upstream routing on the header
   * could run what was not authorized.
   */
  #routingHeaderMismatch(req: IncomingMessage, messages: readonly JsonRpcMessage[]): string | undefined {
    const method = req.headers['mcp-method']
    const name = req.headers['mcp-name']
    if (method === undefined && name === undefined) return undefined
    const [message] = messages
    if (messages.length !== 1 || message === undefined) return 'Mcp-Method and Mcp-Name need a single message'
    if (method !== undefined && method !== message.method)
      return 'the Mcp-Method header does not match the body'
    const bodyName = message.params?.name ?? message.params?.uri
    if (name !== undefined && name !== bodyName) return 'the Mcp-Name header does not match the body'
    return undefined
  }

  #reap(idleMs: number): void {
    for (const id of this.#sessions.idle(idleMs)) {
      if (this.#upstream.busy(id)) continue
      this.#logger.info({ session: id }, 'idle session reaped')
      this.#upstream.endSession(id)
      this.#sessions.delete(id)
    }
  }

  /**
   * The transport spec's DNS-rebinding defence: a browser request from an origin that is neither the public
   * one nor in `allowed_origins` gets 403 before anything else; an allowed one gets the CORS headers.
   * Requests without `Origin` (not from a browser) pass.
   */
  #refusedOrigin(req: IncomingMessage, res: ServerResponse): boolean {
    const origin = req.headers.origin
    if (origin === undefined) return false
    res.setHeader('vary', 'origin')
    if (!this.#allowedOrigins.has(origin)) {
      this.#logger.info({ origin }, 'request from a foreign origin refused')
      sendRpcError(res, 403, RPC.connectionClosed, `Forbidden: origin ${origin} is not allowed`)
      return true
    }
    res.setHeader('access-control-allow-origin', origin)
    for (const [name, value] of Object.entries(CORS)) res.setHeader(name, value)
    return false
  }

  /**
   * On a loopback bind (always so in --dev), a `Host` other than the public URL's or a loopback name with
   * this port means a DNS name rebound to this machine: a web page's requests reaching a local-only server.
   */
  #refusedHost(req: IncomingMessage, res: ServerResponse): boolean {
    if (this.#allowedHosts === undefined || this.#allowedHosts.has((req.headers.host ?? '').toLowerCase()))
      return false
    this.#logger.info({ host: req.headers.host }, 'request for a foreign host name refused')
    sendJson(res, 403, {
      error: 'forbidden_host',
      error_description: 'this server answers only to its public URL and to loopback names with its port',
    })
    return true
  }

  #client(req: IncomingMessage): string | undefined {
    const forwarded = req.headers['x-forwarded-for']
    // The last entry is the one the trusted proxy appended; the ones before it are client-written.
    if (this.#config.trustProxy && typeof forwarded === 'string') return forwarded.split(',').at(-1)?.trim()
    return req.socket.remoteAddress
  }
}

/** An anonymous body over `limits.max_anonymous_body_bytes`: not discovery, whatever it says. */
const TOO_LARGE = Symbol('too large')

const isJson = (req: IncomingMessage): boolean =>
  (req.headers['content-type'] ?? '').startsWith('application/json')

/** The `Host` values of a loopback-bound gateway: the public URL's, and each loopback name with the port. */
function loopbackHosts(resource: URL, port: number): Set<string> {
  const hosts = new Set([resource.host])
  // A client leaves a default port out of Host.
  const omitted = port === (resource.protocol === 'https:' ? 443 : 80)
  for (const name of ['127.0.0.1', 'localhost', '[::1]']) {
    hosts.add(`${name}:${port}`)
    if (omitted) hosts.add(name)
  }
  return hosts
}
