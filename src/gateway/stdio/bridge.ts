import { GatewayError } from '../errors.ts'
import { accepts, acceptsEventStream, sendError, sendJson, sendStatus, singleId } from '../http.ts'
import {
  isRequest,
  isStatelessEra,
  type JsonRpcId,
  type JsonRpcMessage,
  STATELESS_VERSIONS,
} from '../jsonrpc.ts'
import type { ToolPolicy } from '../policy.ts'
import type { SessionRegistry } from '../sessions.ts'
import { type McpExchange, type Upstream, waitUntil } from '../upstream.ts'
import { type ChildOptions, commandRunnable, initializeChild, StdioChild } from './child.ts'
import { EventStream } from './event-stream.ts'
import { honoured, LISTEN_LIMITS, ListenStream, parseFilter } from './listen.ts'
import { keepBodyRaw } from './raw.ts'
import { BridgeSession } from './session.ts'
import { type AnswerRewrite, PostSink } from './sinks.ts'
import {
  BRIDGE_VERSIONS,
  discoverResult,
  statelessRefusal,
  statelessResult,
  statelessStatus,
} from './stateless.ts'
import { withTraceContext } from './trace.ts'

/** How long a child gets to exit after SIGTERM before it is killed. */
const CHILD_STOP_MS = 2000

export interface StdioUpstreamOptions extends ChildOptions {
  policy: ToolPolicy
  sessions: SessionRegistry
  /** A GET stream that carries nothing for this long is ended, so a lingering one cannot keep a session. */
  streamIdleTimeoutMs: number | undefined
}

/**
 * The stdio bridge: Streamable HTTP outside, newline-delimited JSON-RPC to a child inside. The session id is
 * minted here on `initialize`. By default each MCP session has a child of its own: a child that dies fails
 * its pending requests with a JSON-RPC error and takes its session with it, and the next `initialize` spawns
 * a fresh one.
 *
 * With `shared`, one child serves every session of every subject: started for the first session and
 * initialized by the bridge, whose reply answers every session's `initialize` (a first or a repeated one);
 * stopped with its last session. A crash ends all its sessions, and the next `initialize` starts a fresh one.
 *
 * Stateless-era (2026-07-28) requests carry no session: each subject gets one child (the shared one, when
 * shared), which the bridge initializes itself (2025 servers know nothing else), and `server/discover` is
 * answered from that reply.
 */
export class StdioUpstream implements Upstream {
  readonly #options: StdioUpstreamOptions
  readonly #sessions = new Map<string, BridgeSession>()
  /** Stateless-era sessions by subject; each is also a registry entry, so it is reaped when idle. */
  readonly #subjects = new Map<string, Promise<InitializedSession>>()
  /** The shared child, from its first session until its last one is gone or it exits. */
  #shared: SharedChild | undefined

  constructor(options: StdioUpstreamOptions) {
    this.#options = options
    if (options.shared) {
      options.logger.warn(
        'stdio.shared is on: one MCP server process serves every user. Over stdio the server cannot tell ' +
          'users apart: it sees every user’s requests and must be stateless, or trusted with all users’ data. ' +
          'Answers and progress reach only the user who asked; nothing tells whom the server’s own messages ' +
          'are for, so its logging, resource updates and requests (sampling, elicitation, roots) are dropped ' +
          'or refused, and only tools/prompts/resources list changes reach every user.',
      )
    }
  }

  async post(exchange: McpExchange): Promise<void> {
    if (isStatelessEra(exchange.req.headers['mcp-protocol-version'])) return this.#postStateless(exchange)
    const { res } = exchange
    let session: BridgeSession | undefined
    if (exchange.sessionId === undefined) {
      if (!exchange.messages.some((m) => m.method === 'initialize')) {
        sendError(res, new GatewayError('session_required'))
        return
      }
      if (this.#options.shared) return this.#joinShared(exchange)
      session = this.#spawn(exchange.principal?.key, true)
    } else {
      session = this.#sessions.get(exchange.sessionId)
      if (session === undefined) {
        sendError(res, new GatewayError('session_not_found'))
        return
      }
    }
    const header: Record<string, string> =
      exchange.sessionId === undefined ? { 'mcp-session-id': session.id } : {}
    await this.#relay(exchange, session, header, (m) => m)
  }

  async get(exchange: McpExchange): Promise<void> {
    if (this.#refuseStateless(exchange)) return
    const session = this.#existingSession(exchange)
    if (session === undefined) return
    const lastEventId = exchange.req.headers['last-event-id']
    const opened = session.openGetStream(
      exchange.res,
      typeof lastEventId === 'string' ? lastEventId : undefined,
      this.#options.streamIdleTimeoutMs,
    )
    if (opened === 'conflict') {
      sendError(exchange.res, new GatewayError('stream_conflict'))
    } else if (opened === 'unknown_event') {
      sendError(exchange.res, new GatewayError('event_id_unknown'))
    } else {
      this.#options.metrics.streams.inc()
      exchange.res.on('close', () => this.#options.metrics.streams.dec())
    }
  }

  async delete(exchange: McpExchange): Promise<void> {
    if (this.#refuseStateless(exchange)) return
    const session = this.#existingSession(exchange)
    if (session === undefined) return
    this.endSession(session.id)
    sendStatus(exchange.res, 200)
  }

  /** The session a GET or DELETE names; otherwise answers 400 (none named) or 404 (unknown) and gives undefined. */
  #existingSession(exchange: McpExchange): BridgeSession | undefined {
    const session = exchange.sessionId === undefined ? undefined : this.#sessions.get(exchange.sessionId)
    if (session === undefined) {
      const code = exchange.sessionId === undefined ? 'session_required' : 'session_not_found'
      sendError(exchange.res, new GatewayError(code))
    }
    return session
  }

  busy(sessionId: string): boolean {
    return this.#sessions.get(sessionId)?.busy ?? false
  }

  /** Ends a session; its child is stopped once it has no session left. */
  endSession(sessionId: string): void {
    const session = this.#sessions.get(sessionId)
    if (session === undefined) return
    this.#forget(session)
    const { child } = session
    child.detach(session)
    if (child.sessions.size > 0) return
    if (this.#shared?.child === child) this.#shared = undefined
    void child.stop(CHILD_STOP_MS)
  }

  ready(): Promise<boolean> {
    return commandRunnable(this.#options)
  }

  /**
   * GET streams end now; requests in flight get `graceMs` to be answered, and what is left then is answered
   * `shutting_down` (an error event on an SSE stream, which then ends). Only then are the children stopped.
   */
  async close(graceMs: number): Promise<void> {
    const children = [...new Set([...this.#sessions.values()].map((s) => s.child))]
    if (this.#shared && !children.includes(this.#shared.child)) children.push(this.#shared.child)
    for (const session of this.#sessions.values()) {
      session.standalone.finish()
      session.listens.endAll()
    }
    await waitUntil(() => !children.some((child) => child.busy), graceMs)
    const late = new GatewayError('shutting_down')
    for (const child of children) child.failPending(late.rpcCode, late.publicText)
    await Promise.all(children.map((child) => child.stop(CHILD_STOP_MS)))
  }

  /**
   * Relays one POST: requests to the child, their answers (through `rewrite`) back as JSON or as an SSE
   * stream. A legacy SSE stream can be resumed, so its requests go on when the client goes away (their
   * timeout still applies); a JSON answer, or any stateless-era one, cannot, so those are cancelled.
   * `status` gives a single JSON answer's HTTP status (the stateless era's 404 for method-not-found).
   */
  async #relay(
    exchange: McpExchange,
    session: BridgeSession,
    header: Record<string, string>,
    rewrite: AnswerRewrite,
    status?: (answer: JsonRpcMessage) => number,
  ): Promise<void> {
    const { res } = exchange
    const { child } = session
    const requests = exchange.messages.filter(isRequest)
    keepBodyRaw(exchange.messages, exchange.body, exchange.batch)
    if (requests.length === 0) {
      await child.forward(session, undefined, exchange.messages)
      sendStatus(res, 202)
      return
    }
    const resumable = session.listening
    const sse =
      acceptsEventStream(exchange.req) &&
      (exchange.messages.some((m) => m.method === 'tools/call') ||
        !accepts(exchange.req.headers.accept, 'application/json'))
    const stream = !sse ? undefined : resumable ? session.newStream() : new EventStream()
    const { policy } = this.#options
    const sink = new PostSink({
      res,
      requests,
      stream,
      batch: exchange.batch,
      headers: header,
      status,
      // `tools/list` shows only the tools this caller may call, before the era's own reshaping.
      rewrite: (answer, method) => {
        if (method !== 'tools/list' || answer.result === undefined) return rewrite(answer, method)
        const result = policy.filterToolsList(answer.result, exchange.principal?.token)
        // Only a list that lost tools is a new message; an unfiltered one keeps the child's bytes.
        return rewrite(result === answer.result ? answer : { ...answer, result }, method)
      },
    })
    this.#options.metrics.streams.inc()
    const started = performance.now()
    const ended = new Promise<void>((resolve) => {
      sink.onDone = resolve
      res.on('close', resolve)
    })
    try {
      await child.forward(session, sink, withTraceContext(exchange.messages, exchange.req.headers))
      await ended
    } finally {
      this.#options.metrics.streams.dec()
    }
    this.#options.metrics.upstreamLatency.observe((performance.now() - started) / 1000)
    if (sink.open && !(resumable && sink.stream !== undefined)) child.cancel(session, sink)
  }

  /** A new session on the shared child: its `initialize` is answered with the bridge's own one's reply. */
  async #joinShared(exchange: McpExchange): Promise<void> {
    const [initialize] = exchange.messages
    if (exchange.messages.length !== 1 || initialize === undefined || !isRequest(initialize)) {
      sendError(exchange.res, new GatewayError('initialize_not_alone'))
      return
    }
    let joined: InitializedSession
    try {
      joined = await this.#sharedSession(exchange.principal?.key, true)
    } catch (error) {
      this.#options.logger.warn(
        { detail: (error as Error).message },
        'the MCP server could not be initialized',
      )
      sendError(exchange.res, new GatewayError('upstream_not_initialized'), initialize.id)
      return
    }
    sendJson(
      exchange.res,
      200,
      { jsonrpc: '2.0', id: initialize.id, result: joined.initialized },
      { 'mcp-session-id': joined.session.id },
    )
  }

  async #postStateless(exchange: McpExchange): Promise<void> {
    const { res } = exchange
    const version = exchange.req.headers['mcp-protocol-version'] as string
    const id = singleId(exchange.messages)
    if (!STATELESS_VERSIONS.includes(version)) {
      const data = { supported: BRIDGE_VERSIONS, requested: version }
      const reason = `unsupported protocol version ${version}`
      sendError(res, new GatewayError('unsupported_protocol_version', { reason, data }), id)
      return
    }
    const refusal =
      statelessRefusal(exchange, version) ??
      (exchange.messages.length > 1 && exchange.messages.some((m) => m.method === 'subscriptions/listen')
        ? new GatewayError('listen_not_alone')
        : undefined)
    if (refusal) {
      sendError(res, refusal, id)
      return
    }
    let child: InitializedSession
    try {
      child = await this.#statelessChild(exchange.principal?.key)
    } catch (error) {
      this.#options.logger.warn(
        { detail: (error as Error).message },
        'the MCP server could not be initialized',
      )
      sendError(res, new GatewayError('upstream_not_initialized'), id)
      return
    }
    this.#options.sessions.use(child.session.id, exchange.principal?.key)
    const [message] = exchange.messages
    if (exchange.messages.length === 1 && message?.method === 'server/discover' && isRequest(message)) {
      const result = discoverResult(child.initialized, this.#options.shared)
      sendJson(res, 200, { jsonrpc: '2.0', id: message.id, result })
      return
    }
    if (message?.method === 'subscriptions/listen' && isRequest(message))
      return this.#listen(exchange, child, message)
    await this.#relay(exchange, child.session, {}, statelessResult, statelessStatus)
  }

  /**
   * Opens a `subscriptions/listen` stream on the subject's session (see listen.ts): the agreed filter is what
   * the child offers, with the resource subscriptions it accepted.
   */
  async #listen(exchange: McpExchange, child: InitializedSession, message: JsonRpcMessage): Promise<void> {
    const { res } = exchange
    const id = message.id as JsonRpcId
    const { listens } = child.session
    const asked = parseFilter(message.params?.notifications)
    if (typeof asked === 'string') {
      sendError(res, new GatewayError('listen_filter_invalid', { reason: `Invalid params: ${asked}` }), id)
      return
    }
    if (listens.size >= LISTEN_LIMITS.streamsPerSubject) {
      const detail = `${listens.size} open listen streams`
      sendError(res, new GatewayError('too_many_listen_streams', { detail }), id)
      return
    }
    const agreed = honoured(asked, child.initialized.capabilities, this.#options.shared)
    const uris = await listens.subscribe(agreed.uris)
    if (res.destroyed || child.session.child.exited) {
      listens.abandon(uris)
      if (!res.destroyed) sendError(res, new GatewayError('upstream_not_initialized'), id)
      return
    }
    const stream = new ListenStream(res, id, { ...agreed, uris }, this.#options.streamIdleTimeoutMs)
    listens.add(stream)
    this.#options.metrics.streams.inc()
    res.on('close', () => this.#options.metrics.streams.dec())
  }

  /** GET and DELETE have no meaning without sessions (the 2026-07-28 transport answers them with 405). */
  #refuseStateless(exchange: McpExchange): boolean {
    if (!isStatelessEra(exchange.req.headers['mcp-protocol-version'])) return false
    exchange.res.setHeader('allow', 'POST')
    sendError(exchange.res, new GatewayError('stateless_no_sessions'))
    return true
  }

  /** The subject's session, opened and its child initialized on first use; `anonymous` for anonymous discovery. */
  #statelessChild(owner: string | undefined): Promise<InitializedSession> {
    const subject = owner ?? 'anonymous'
    const existing = this.#subjects.get(subject)
    if (existing) return existing
    const forget = () => {
      if (this.#subjects.get(subject) === started) this.#subjects.delete(subject)
    }
    const started = this.#statelessSession(owner).then(
      (joined) => {
        joined.session.onEnd = forget
        return joined
      },
      (error: unknown) => {
        forget()
        throw error
      },
    )
    this.#subjects.set(subject, started)
    return started
  }

  async #statelessSession(owner: string | undefined): Promise<InitializedSession> {
    if (this.#options.shared) return this.#sharedSession(owner, false)
    const session = this.#spawn(owner, false)
    try {
      return { session, initialized: await initializeChild(session.child) }
    } catch (error) {
      this.endSession(session.id)
      throw error
    }
  }

  /** A session on the shared child, which is started and initialized by the bridge if there is none. */
  async #sharedSession(owner: string | undefined, listening: boolean): Promise<InitializedSession> {
    this.#shared ??= this.#startShared()
    const { child, initialized } = this.#shared
    const result = await initialized
    if (child.exited) throw new Error('the shared MCP server process ended')
    return { session: this.#open(child, owner, listening), initialized: result }
  }

  #startShared(): SharedChild {
    const child = this.#startChild()
    this.#options.logger.info({ shared: true, pid: child.process.pid }, 'MCP server process started')
    const initialized = initializeChild(child).catch((error: unknown) => {
      if (this.#shared?.child === child) this.#shared = undefined
      void child.stop(CHILD_STOP_MS)
      throw error
    })
    return { child, initialized }
  }

  /** A session with a child of its own. */
  #spawn(owner: string | undefined, listening: boolean): BridgeSession {
    const session = this.#open(this.#startChild(), owner, listening)
    this.#options.logger.info(
      { session: session.id, pid: session.child.process.pid },
      'MCP server process started',
    )
    return session
  }

  #startChild(): StdioChild {
    const child = new StdioChild(this.#options)
    child.onExit = () => {
      if (this.#shared?.child === child) this.#shared = undefined
      for (const session of child.sessions) this.#forget(session)
    }
    return child
  }

  #open(child: StdioChild, owner: string | undefined, listening: boolean): BridgeSession {
    const session = new BridgeSession(child, listening)
    this.#sessions.set(session.id, session)
    this.#options.sessions.bind(session.id, owner)
    return session
  }

  #forget(session: BridgeSession): void {
    this.#sessions.delete(session.id)
    this.#options.sessions.delete(session.id)
    session.onEnd()
  }
}

interface SharedChild {
  child: StdioChild
  /** Its `initialize` result, once the bridge's `initialize` is answered. */
  initialized: Promise<Record<string, unknown>>
}

interface InitializedSession {
  session: BridgeSession
  /** The child's `initialize` result. */
  initialized: Record<string, unknown>
}
