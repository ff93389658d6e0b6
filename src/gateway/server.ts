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
import { requestHead } from '../guard/adapters/node_http.ts'
import {
  createGuard,
  type Guard,
  type GuardOptions,
  type GuardResult,
  type RequestHead,
  type AuthorizationServerOptions as TrustedServer,
} from '../guard/index.ts'
import { clientAddress, isLoopback, LOOPBACK_HOSTNAMES } from '../guard/lib/http.ts'
import type { SharedRedis } from '../storage/redis.ts'
import type { Store } from '../storage/store.ts'
import { type GatewayConfig, guardOptionsFor } from './config.ts'
import { type CredentialMode, credentialMode } from './credentials/index.ts'
import { GatewayError, RETRY_SOON_SECONDS } from './errors.ts'
import {
  addresses,
  BodyTooLarge,
  bufferedBody,
  mediaType,
  readBody,
  requestUrl,
  sendError,
  sendJson,
  sendWebResponse,
  singleId,
} from './http.ts'
import { type Principal, principalOf } from './identity.ts'
import { isStatelessEra, type JsonRpcMessage, parseJsonRpcBody, RPC } from './jsonrpc.ts'
import { createGatewayLogger, guardLogger, redactUrl } from './logger.ts'
import { GatewayMetrics } from './metrics.ts'
import { isDiscoveryOnly, ToolPolicy } from './policy.ts'
import { HttpUpstream } from './proxy.ts'
import { type SessionBindings, type SessionLookup, SessionRegistry } from './sessions.ts'
import { redisReplayStore } from './shared_replay.ts'
import { RedisSessions } from './shared_sessions.ts'
import { StdioUpstream } from './stdio/bridge.ts'
import { LAST_WORD_MS, type McpExchange, type Upstream, waitUntil } from './upstream.ts'

/** A POST's JSON-RPC body, strictly parsed; empty for other requests. */
interface RequestBody {
  bytes: Buffer
  messages: JsonRpcMessage[]
  batch: boolean
}

/** A request to the MCP endpoint as the admission steps learn it. */
interface Admission {
  req: IncomingMessage
  res: ServerResponse
  /** Its method, target and credential headers, as the guard reads them: no web `Request` built. */
  request: RequestHead
  /** Known once a token is verified; `undefined` for anonymous discovery. */
  principal: Principal | undefined
  body: RequestBody
  sessionId: string | undefined
}

/** Goes on (true), answers the request itself (false), or throws the GatewayError it is refused with. */
type AdmissionStep = (admission: Admission) => boolean | Promise<boolean>

const exchangeOf = (a: Admission): McpExchange => ({
  req: a.req,
  res: a.res,
  principal: a.principal,
  sessionId: a.sessionId,
  body: a.body.bytes,
  messages: a.body.messages,
  batch: a.body.batch,
})

const NO_BODY: RequestBody = { bytes: Buffer.alloc(0), messages: [], batch: false }
const MAX_HEADERS = 100
/** How long one readiness answer of the upstream is reused. */
const READINESS_TTL_MS = 1000
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
  options: {
    logger?: Logger
    authorizationServer?: StartAuthorizationServer
    /** The Redis of `shared_state`, opened by the caller (it closes it after the gateway). */
    shared?: SharedRedis
  } = {},
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
    const guardOptions = guardOptionsFor(config.guard, resource)
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
      ...(options.shared
        ? { dpop: { ...guardOptions.dpop, replayStore: redisReplayStore(options.shared) } }
        : {}),
      scopesSupported,
      ...(authorizationServer
        ? { authorizationServers: [authorizationServer.trusted], isRevoked: authorizationServer.isRevoked }
        : {}),
      logger: guardLogger(logger),
    })
    const gateway = new GatewayHandler(config, guard, logger, authorizationServer, port, options.shared)
    handler = (req, res) => void gateway.handle(req, res)
    // After the handler: the mode may check the embedded authorization server, which answers through it.
    await gateway.startCredentials()
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
  readonly #sessions: SessionBindings
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
  /** Responses of the MCP endpoint not finished yet: shutdown answers each one, never cuts it off. */
  readonly #open = new Set<ServerResponse>()
  #readiness: { at: number; ready: Promise<boolean> } | undefined
  /** Anonymous request bodies being read now, against `limits.max_anonymous_body_reads`. */
  #anonymousReads = 0
  /** The end of a response of the MCP endpoint: one listener for all of them, not a closure each. */
  readonly #closed: (this: ServerResponse) => void

  constructor(
    config: GatewayConfig,
    guard: Guard,
    logger: Logger,
    authorizationServer: EmbeddedAuthorization | undefined,
    port: number,
    sharedState: SharedRedis | undefined,
  ) {
    this.#config = config
    const handler = this
    this.#closed = function (this: ServerResponse) {
      handler.#open.delete(this)
      handler.metrics.requests.inc({ method: this.req.method ?? '', status: String(this.statusCode) })
    }
    this.#authorizationServer = authorizationServer
    this.#guard = guard
    this.#logger = logger
    const resource = new URL(guard.resource)
    this.#origin = resource.origin
    this.#mcpPath = resource.pathname
    this.#allowedOrigins = new Set([resource.origin, ...config.allowedOrigins])
    this.#allowedHosts = isLoopback(config.address) ? loopbackHosts(resource, port) : undefined
    const upstream = config.upstream
    const local = new SessionRegistry(config.sessions, this.metrics)
    // A stdio session lives in one process (instances need sticky routing): its binding stays there too.
    this.#sessions =
      sharedState && upstream.kind === 'http'
        ? new RedisSessions({
            redis: sharedState,
            limits: config.sessions,
            idleTimeoutSeconds: config.sessions.idleTimeoutSeconds,
            busy: (id) => this.#upstream.busy(id),
          })
        : local
    this.#policy = new ToolPolicy(config, guard)
    this.#credentials = credentialMode(config.upstreamCredentials, {
      resource: guard.resource,
      upstream: upstream.kind === 'http' ? upstream.url.href : `stdio:${upstream.command}`,
      settings: config.upstreamCredentialSettings,
      authorizationServer: authorizationServer?.trusted.issuer,
      vault: authorizationServer?.auth.vault,
    })
    const shared = {
      policy: this.#policy,
      metrics: this.metrics,
      logger,
      timeoutMs: config.limits.upstreamTimeoutMs,
      streamIdleTimeoutMs: config.limits.streamIdleTimeoutMs,
    }
    this.#upstream =
      upstream.kind === 'http'
        ? new HttpUpstream({
            ...shared,
            sessions: this.#sessions,
            url: upstream.url,
            credentials: this.#credentials,
            maxBodyBytes: config.limits.maxBodyBytes * 16,
          })
        : new StdioUpstream({
            ...shared,
            sessions: local,
            ...upstream,
            maxMessageBytes: config.limits.maxBodyBytes * 16,
          })
    if (this.#credentials.startupWarning) logger.warn(this.#credentials.startupWarning)
    const idleMs = config.sessions.idleTimeoutSeconds * 1000
    // Twice per idle period: Redis expires a session after it, so a busy one must be renewed before.
    this.#reaper = setInterval(() => this.#reap(idleMs), Math.min(idleMs / 2, 30_000))
    this.#reaper.unref()
  }

  async startCredentials(): Promise<void> {
    await this.#credentials.start?.()
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Checked first: the log object would otherwise be built on every request for nothing.
    if (this.#logger.isLevelEnabled('debug'))
      this.#logger.debug(
        {
          req: { method: req.method, url: redactUrl(req.url), headers: req.headers },
          from: clientAddress(req, this.#config.trustProxy),
        },
        'request',
      )
    try {
      if (this.#refusedHost(req, res)) return
      // The authorization server owns its paths on this origin (the 2025-03-26 /authorize, /token, /register
      // fallbacks, its discovery documents, the sign-in pages); the MCP path is never one of them.
      if (this.#authorizationServer && (await this.#authorizationServer.auth.handle(req, res))) return
      const adminConsole = this.#authorizationServer?.auth.console
      if (adminConsole && (await adminConsole(req, res, () => this.#ready()))) return
      if (addresses(req, this.#origin, this.#mcpPath)) {
        this.#open.add(res)
        res.on('close', this.#closed)
        // Not awaited, nor returned: this frame and its promise would be held for as long as a stream lasts.
        this.#mcp(req, res)
        return
      }
      await this.#other(req, res, requestUrl(req, this.#origin))
    } catch (error) {
      this.#failed(res, error)
    }
  }

  #failed(res: ServerResponse, error: unknown): void {
    this.#logger.error({ err: error }, 'request failed')
    sendError(res, new GatewayError('internal_error'))
  }

  async close(server: Server): Promise<void> {
    this.#closing = true
    clearInterval(this.#reaper)
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeIdleConnections()
    await this.#upstream.close(this.#config.limits.shutdownGraceMs)
    // What the upstream did not answer (a request still being admitted) is refused; a stream still open ends.
    for (const res of this.#open) {
      if (!res.headersSent) sendError(res, new GatewayError('shutting_down'))
      else res.end()
    }
    await waitUntil(() => this.#open.size === 0, LAST_WORD_MS)
    server.closeAllConnections()
    await closed
  }

  async #other(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' })
    if (path === '/readyz') {
      const ready = await this.#ready()
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
    const metadata = this.#guard.metadataResponse(requestHead(req, req.url ?? '/'))
    if (metadata) return sendWebResponse(res, metadata)
    sendJson(res, 404, { error: 'not_found' })
  }

  /** `/readyz`'s answer, also the console's upstream health: not shutting down, and the upstream ready. */
  async #ready(): Promise<boolean> {
    return !this.#closing && (await this.#upstreamReady())
  }

  /**
   * The upstream's readiness, asked at most once a second however often `/readyz` is called: the endpoint is
   * public, and each answer may cost the upstream a request.
   */
  #upstreamReady(): Promise<boolean> {
    const now = Date.now()
    if (this.#readiness === undefined || now - this.#readiness.at >= READINESS_TTL_MS) {
      this.#readiness = { at: now, ready: this.#upstream.ready() }
    }
    return this.#readiness.ready
  }

  /**
   * Admits the request, then hands it to the upstream, once the admission's frame (with its request head)
   * is gone: a stream would hold it for as long as it lasts.
   */
  #mcp(req: IncomingMessage, res: ServerResponse): void {
    const failed = (error: unknown) => this.#failed(res, error)
    this.#admit(req, res)
      .then((exchange) => {
        if (exchange === undefined) return
        // Not returned: the admission's promise settles now instead of waiting on the stream.
        const method = req.method
        const relayed =
          method === 'POST'
            ? this.#upstream.post(exchange)
            : method === 'GET'
              ? this.#upstream.get(exchange)
              : this.#upstream.delete(exchange)
        relayed.catch(failed)
      })
      .catch(failed)
  }

  /** The exchange for the upstream, or `undefined` when the request was answered (refused, or OPTIONS). */
  async #admit(req: IncomingMessage, res: ServerResponse): Promise<McpExchange | undefined> {
    const method = req.method ?? 'GET'
    let admission: Admission | undefined
    try {
      if (this.#refusedOrigin(req, res)) return
      if (method === 'OPTIONS') {
        res.writeHead(204, { 'access-control-max-age': '86400' }).end()
        return
      }
      if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
        throw new GatewayError('method_not_allowed', {
          reason: `method ${method} is not allowed on the MCP endpoint`,
        })
      }
      if (this.#closing) throw new GatewayError('shutting_down')
      admission = {
        req,
        res,
        request: requestHead(req, req.url ?? '/'),
        principal: undefined,
        body: NO_BODY,
        sessionId: undefined,
      }
      for (const step of this.#admission) {
        const result = step(admission)
        // Most steps are synchronous: awaiting them would cost a turn of the microtask queue each.
        if (!(typeof result === 'boolean' ? result : await result)) return
      }
    } catch (error) {
      if (!(error instanceof GatewayError)) throw error
      if (error.detail) this.#logger.info({ code: error.code, detail: error.detail }, 'request refused')
      sendError(res, error, singleId(admission?.body.messages ?? []))
      return
    }
    return exchangeOf(admission)
  }

  /**
   * The admission of a request to the MCP endpoint, in the order that keeps unknown callers cheap: the token,
   * from the headers, before the body, so the body of a caller without a valid token is never read; then the
   * body (bounded) and its strict parse; then the scopes its tool calls need; then the media type, the routing
   * headers and the session. With anonymous discovery on, a request without any Authorization header has its
   * body read within the much smaller anonymous limit, to learn whether it is discovery only. Each step goes
   * on (true), answers the request itself (false) or throws the {@link GatewayError} it is refused with.
   */
  readonly #admission: readonly AdmissionStep[] = [
    (a) => this.#tokenBeforeBody(a),
    (a) => this.#readBody(a),
    (a) => this.#tokenUnlessDiscovery(a),
    (a) => this.#scopes(a),
    (a) => this.#machineClients(a),
    (a) => this.#mediaType(a),
    (a) => this.#routingHeaders(a),
    (a) => this.#session(a),
  ]

  /** The token, from the headers, unless the request may be anonymous discovery (then its body decides). */
  #tokenBeforeBody(a: Admission): boolean | Promise<boolean> {
    if (this.#config.allowAnonymousDiscovery && a.req.headers.authorization === undefined) return true
    return this.#authenticate(a)
  }

  /** An anonymous request that is more than discovery needs a token after all. */
  #tokenUnlessDiscovery(a: Admission): boolean | Promise<boolean> {
    if (a.principal !== undefined || isDiscoveryOnly(a.body.messages)) return true
    return this.#authenticate(a)
  }

  /** Verifies the request's token; a refusal (401, or 403 for DPoP and the like) is the guard's answer. */
  async #authenticate(a: Admission): Promise<boolean> {
    const result = await this.#guard.checkToken(a.request)
    if (result.ok) {
      a.principal = principalOf(result.token)
      return true
    }
    // The body is not read for an unknown caller: the connection ends with the answer instead.
    if (!a.req.complete) a.res.setHeader('connection', 'close')
    await this.#refuse(a.res, result)
    return false
  }

  /** The token holds the scopes of the guard and of every tool the body calls. */
  #scopes(a: Admission): boolean | Promise<boolean> {
    if (a.principal === undefined) return true
    const { messages } = a.body
    const result = this.#guard.checkScopes(a.request, a.principal.token, {
      scopes: this.#policy.requiredScopes(messages),
    })
    if (result.ok) return true
    return this.#refuse(a.res, result).then(() => false)
  }

  /** A client acting for itself (client credentials) calls only what machine clients may. */
  #machineClients(a: Admission): boolean {
    const refusal = a.principal && this.#policy.machineRefusal(a.body.messages, a.principal.token)
    if (!refusal) return true
    this.metrics.authFailures.inc({ reason: 'machine_client_refused' })
    throw new GatewayError('machine_client_refused', { reason: refusal })
  }

  async #refuse(res: ServerResponse, result: GuardResult & { ok: false }): Promise<void> {
    this.metrics.authFailures.inc({ reason: result.error.code })
    await sendWebResponse(res, result.response)
  }

  /**
   * The body of a JSON POST, read within the caller's limit (the token is valid, or the anonymous one) and
   * strictly parsed. An anonymous body over its limit is not discovery, whatever it says: it is left unread
   * and the request goes on to need a token. At most `limits.max_anonymous_body_reads` anonymous bodies are
   * read at once.
   */
  #readBody(a: Admission): boolean | Promise<boolean> {
    if (a.req.method !== 'POST' || !isJson(a.req)) return true
    // A caller with a valid token whose body is all here already: no read to wait for (nor to count).
    const whole =
      a.principal === undefined ? undefined : bufferedBody(a.req, this.#config.limits.maxBodyBytes)
    return whole === undefined ? this.#readAndParseBody(a) : this.#parseBody(a, whole)
  }

  async #readAndParseBody(a: Admission): Promise<boolean> {
    const { maxBodyBytes, maxAnonymousBodyBytes, maxAnonymousBodyReads } = this.#config.limits
    const authenticated = a.principal !== undefined
    if (!authenticated && this.#anonymousReads >= maxAnonymousBodyReads) {
      a.res.setHeader('connection', 'close')
      a.res.setHeader('retry-after', String(RETRY_SOON_SECONDS))
      throw new GatewayError('anonymous_reads_full')
    }
    let bytes: Buffer
    if (!authenticated) this.#anonymousReads += 1
    try {
      bytes = await readBody(a.req, authenticated ? maxBodyBytes : maxAnonymousBodyBytes)
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error
      a.res.setHeader('connection', 'close')
      if (!authenticated) return true
      throw new GatewayError('body_too_large', { reason: `the request body exceeds ${maxBodyBytes} bytes` })
    } finally {
      if (!authenticated) this.#anonymousReads -= 1
    }
    return this.#parseBody(a, bytes)
  }

  /** The body's strict parse, refused before the upstream sees anything: the bytes that go on must read as authorized. */
  #parseBody(a: Admission, bytes: Buffer): boolean {
    const parsed = parseJsonRpcBody(bytes, this.#config.limits.maxBatchMessages)
    if (!parsed.ok) {
      const code = parsed.code === RPC.parseError ? 'body_not_json' : 'body_not_jsonrpc'
      throw new GatewayError(code, { reason: parsed.message })
    }
    a.body = { bytes, messages: parsed.messages, batch: parsed.batch }
    return true
  }

  #mediaType(a: Admission): boolean {
    if (a.req.method === 'POST' && !isJson(a.req)) throw new GatewayError('unsupported_media_type')
    return true
  }

  /**
   * 2026-07-28 requests name their method (and tool) in headers so intermediaries can route without the
   * body. The gateway authorizes on the body, so the two must agree or an upstream routing on the header
   * could run what was not authorized.
   */
  #routingHeaders(a: Admission): boolean {
    const method = a.req.headers['mcp-method']
    const name = a.req.headers['mcp-name']
    if (method === undefined && name === undefined) return true
    const { messages } = a.body
    const [message] = messages
    const mismatch = (reason: string) => new GatewayError('header_mismatch', { reason })
    if (messages.length !== 1 || message === undefined)
      throw mismatch('Mcp-Method and Mcp-Name need a single message')
    if (method !== undefined && method !== message.method)
      throw mismatch('the Mcp-Method header does not match the body')
    const bodyName = message.params?.name ?? message.params?.uri
    if (name !== undefined && name !== bodyName) throw mismatch('the Mcp-Name header does not match the body')
    return true
  }

  /**
   * The session the request belongs to (none, or an `initialize` admitted to open one): an id unknown or of
   * another subject is refused (404), as is a new one without room or too fast (503 or 429 with Retry-After).
   */
  #session(a: Admission): boolean | Promise<boolean> {
    const owner = a.principal?.key
    // The stateless era has no sessions: a stray Mcp-Session-Id is ignored, and never forwarded unchecked.
    const sessionId = isStatelessEra(a.req.headers['mcp-protocol-version'])
      ? undefined
      : a.req.headers['mcp-session-id']
    if (typeof sessionId === 'string') {
      const known = (lookup: SessionLookup) => {
        if (lookup !== 'ok') throw new GatewayError('session_not_found')
        a.sessionId = sessionId
        return true
      }
      // In memory the answer is at hand: no promise made for it.
      const lookup = this.#sessions.use(sessionId, owner)
      return lookup instanceof Promise ? lookup.then(known) : known(lookup)
    }
    if (!a.body.messages.some((m) => m.method === 'initialize')) return true
    return this.#newSession(a, owner)
  }

  /** An `initialize`, admitted to open a session if there is room and its owner does not open them too fast. */
  async #newSession(a: Admission, owner: string | undefined): Promise<boolean> {
    const refusal = await this.#sessions.admit(owner, a.res)
    if (refusal === undefined) return true
    a.res.setHeader('retry-after', String(refusal.retryAfterSeconds))
    throw refusal.error
  }

  #reap(idleMs: number): void {
    for (const id of this.#sessions.idle(idleMs)) {
      if (this.#upstream.busy(id)) continue
      this.#logger.info({ session: id }, 'idle session reaped')
      this.#upstream.endSession(id)
      void this.#sessions.delete(id)
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
      throw new GatewayError('origin_forbidden', { reason: `Forbidden: origin ${origin} is not allowed` })
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
}

const isJson = (req: IncomingMessage): boolean =>
  mediaType(req.headers['content-type']) === 'application/json'

/** The `Host` values of a loopback-bound gateway: the public URL's, and each loopback name with the port. */
function loopbackHosts(resource: URL, port: number): Set<string> {
  const hosts = new Set([resource.host])
  // A client leaves a default port out of Host.
  const omitted = port === (resource.protocol === 'https:' ? 443 : 80)
  for (const name of LOOPBACK_HOSTNAMES) {
    hosts.add(`${name}:${port}`)
    if (omitted) hosts.add(name)
  }
  return hosts
}
