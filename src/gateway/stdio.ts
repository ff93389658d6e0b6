import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { childEnvironment } from './child_env.ts'
import { acceptsEventStream, answered, sendJson, sendRpcError, sendStatus, singleId } from './http.ts'
import {
  isNotification,
  isRequest,
  isResponse,
  isStatelessEra,
  type JsonRpcId,
  type JsonRpcMessage,
  PROTOCOL_VERSION_META,
  RPC,
  rpcError,
  STATELESS_VERSIONS,
} from './jsonrpc.ts'
import type { GatewayMetrics } from './metrics.ts'
import type { ToolPolicy } from './policy.ts'
import type { SessionRegistry } from './sessions.ts'
import { formatSseEvent } from './sse.ts'
import type { McpExchange, Upstream } from './upstream.ts'

export interface StdioUpstreamOptions {
  command: string
  args: readonly string[]
  env: Readonly<Record<string, string>>
  cwd: string | undefined
  /** One child for every session and subject, instead of one per session (weaker isolation, warned). */
  shared: boolean
  policy: ToolPolicy
  sessions: SessionRegistry
  metrics: GatewayMetrics
  logger: Logger
  timeoutMs: number
  /** Longest line a child may write before it is treated as broken. */
  maxMessageBytes: number
  /** A GET stream that carries nothing for this long is ended, so a lingering one cannot keep a session. */
  streamIdleTimeoutMs: number | undefined
}

/**
 * What the bridge keeps of its SSE streams for `Last-Event-ID` resumption: the newest events of each stream,
 * for the newest streams of each session (streams still waiting for answers are never dropped). A client
 * that resumes past what is kept gets the kept events only; the final response of a stream is its newest
 * event, so it is always among them.
 */
export const REPLAY_LIMITS = { eventsPerStream: 100, streamsPerSession: 16 } as const

const idKey = (id: JsonRpcId): string => `${typeof id}:${id}`

/** One newline-delimited message for a child. */
const frame = (message: JsonRpcMessage): string => `${JSON.stringify(message)}\n`

const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }

/**
 * One SSE stream, its events numbered `<stream id>/<n>`. The client may lose the connection at any time
 * and resume with a GET carrying the last id it saw: the kept events after it are replayed and the
 * stream goes on over the new response. Events written while no response is attached are only kept.
 */
class EventStream {
  readonly id = randomUUID()
  readonly #events: { seq: number; text: string }[] = []
  #seq = 0
  /** The newest event written to some response: a plain GET gets only what came after it. */
  #sent = 0
  #res: ServerResponse | undefined
  #idle: NodeJS.Timeout | undefined
  finished = false

  get attached(): boolean {
    return this.#res !== undefined && !this.#res.destroyed
  }

  /**
   * Serves the stream on `res` from the event after `afterSeq`; a response it was on before is ended. With
   * `idleTimeoutMs`, the response ends after that long without an event (no heartbeat: a stream kept busy
   * by the gateway alone would keep its session from ever being reaped); the client reconnects if it lives.
   */
  attach(
    res: ServerResponse,
    headers: Record<string, string>,
    afterSeq = this.#sent,
    idleTimeoutMs?: number,
  ): void {
    if (answered(res)) return
    const previous = this.#res
    this.#res = res
    clearTimeout(this.#idle)
    this.#idle = idleTimeoutMs === undefined ? undefined : setTimeout(() => res.end(), idleTimeoutMs)
    previous?.end()
    res.writeHead(200, { ...SSE_HEADERS, ...headers })
    res.flushHeaders()
    for (const event of this.#events) if (event.seq > afterSeq) res.write(event.text)
    this.#sent = this.#seq
    res.on('close', () => {
      if (this.#res !== res) return
      this.#res = undefined
      clearTimeout(this.#idle)
    })
    if (this.finished) res.end()
  }

  /** Writes (and keeps) a message; returns false when the client is slow and the child should wait. */
  write(message: JsonRpcMessage): boolean {
    this.#seq += 1
    const text = formatSseEvent({
      id: `${this.id}/${this.#seq}`,
      event: 'message',
      data: JSON.stringify(message),
    })
    this.#events.push({ seq: this.#seq, text })
    if (this.#events.length > REPLAY_LIMITS.eventsPerStream) this.#events.shift()
    const res = this.#res
    // A finished stream's response is ended: a write would fail with an 'error' event nobody handles.
    if (res === undefined || res.destroyed || res.writableEnded) return true
    this.#sent = this.#seq
    this.#idle?.refresh()
    return res.write(text)
  }

  finish(): void {
    this.finished = true
    this.#res?.end()
  }

  /** Resolves once the client took what was written, or went away. */
  drained(): Promise<void> {
    const res = this.#res
    if (res === undefined || res.destroyed || !res.writableNeedDrain) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        res.off('drain', done)
        res.off('close', done)
        resolve()
      }
      res.once('drain', done)
      res.once('close', done)
    })
  }
}

/** `<stream id>/<n>` as {@link EventStream} numbers its events. */
function parseEventId(value: string): { streamId: string; seq: number } | undefined {
  const match = /^([0-9a-f-]{36})\/(\d{1,15})$/.exec(value)
  return match ? { streamId: match[1] as string, seq: Number(match[2]) } : undefined
}

/**
 * The responses one POST waits for, and where they go: a resumable SSE stream, or one JSON body that is
 * lost with its connection.
 */
class PostSink implements Receiver {
  readonly #pending: Set<string>
  readonly #collected: JsonRpcMessage[] = []
  readonly #res: ServerResponse
  readonly #batch: boolean
  readonly #sessionHeader: Record<string, string>
  readonly stream: EventStream | undefined
  onDone: () => void = () => {}

  constructor(
    res: ServerResponse,
    ids: JsonRpcId[],
    stream: EventStream | undefined,
    batch: boolean,
    sessionHeader: Record<string, string>,
  ) {
    this.#res = res
    this.#pending = new Set(ids.map(idKey))
    this.stream = stream
    this.#batch = batch
    this.#sessionHeader = sessionHeader
    stream?.attach(res, sessionHeader)
  }

  /** The client ids (as `idKey`) still without an answer. */
  get waiting(): readonly string[] {
    return [...this.#pending]
  }

  /** Still waiting for answers that someone can receive: now, or after resuming the stream. */
  get open(): boolean {
    return this.#pending.size > 0 && (this.stream !== undefined || !this.#res.destroyed)
  }

  send(message: JsonRpcMessage): boolean {
    const done = isResponse(message) && this.#pending.delete(idKey(message.id as JsonRpcId))
    let flowing = true
    if (this.stream) flowing = this.stream.write(message)
    else if (done) this.#collected.push(message)
    if (done && this.#pending.size === 0) this.#finish()
    return flowing
  }

  /** The client cancelled the request: no answer will come. */
  drop(key: string): void {
    if (this.#pending.delete(key) && this.#pending.size === 0) this.#finish()
  }

  #finish(): void {
    if (this.stream) this.stream.finish()
    else if (this.#collected.length === 0) sendStatus(this.#res, 202, this.#sessionHeader)
    else sendJson(this.#res, 200, this.#batch ? this.#collected : this.#collected[0], this.#sessionHeader)
    this.onDone()
  }

  drained(): Promise<void> {
    return this.stream?.drained() ?? Promise.resolve()
  }
}

/** Where the answers to forwarded requests go: a client's POST, or the bridge itself. */
interface Receiver {
  readonly open: boolean
  send(message: JsonRpcMessage): boolean
  drop(clientKey: string): void
  drained(): Promise<void>
}

/**
 * A request in flight at the child. The child sees ids and progress tokens the bridge numbers itself, so
 * requests of clients that share a child (the sessions of a shared child, one subject's stateless requests)
 * never collide; the client's own values come back on the answers.
 */
interface Pending {
  childId: number
  clientId: JsonRpcId
  /** The session that asked; `undefined` for the bridge's own requests. */
  session: BridgeSession | undefined
  sink: Receiver
  timer: NodeJS.Timeout
  clientToken: unknown
  childToken: number | undefined
}

/** The bridge's own requests to a child (its own `initialize`). */
class InternalReceiver implements Receiver {
  open = true
  readonly answer: Promise<JsonRpcMessage>
  #resolve: (message: JsonRpcMessage) => void = () => {}

  constructor() {
    this.answer = new Promise((resolve) => {
      this.#resolve = resolve
    })
  }

  send(message: JsonRpcMessage): boolean {
    this.open = false
    this.#resolve(message)
    return true
  }

  drop(): void {}

  drained(): Promise<void> {
    return Promise.resolve()
  }
}

/**
 * The server's lists of tools, prompts or resources changed: news for every session of the child. They are
 * the same lists for everyone (a shared child has one), so telling all tells no one anything of another's.
 */
const LIST_CHANGED = new Set([
  'notifications/tools/list_changed',
  'notifications/prompts/list_changed',
  'notifications/resources/list_changed',
])

/**
 * One MCP session of the bridge: its id, the child it talks to, and the streams it can resume. A session
 * that does not listen (a stateless subject's) can be sent nothing the child says on its own.
 */
class BridgeSession {
  readonly id = randomUUID()
  readonly child: StdioChild
  readonly listening: boolean
  /** Messages not tied to a request: the GET stream, kept while no GET is open. */
  readonly standalone = new EventStream()
  readonly #streams = new Map<string, EventStream>([[this.standalone.id, this.standalone]])
  onEnd: () => void = () => {}

  constructor(child: StdioChild, listening: boolean) {
    this.child = child
    this.listening = listening
    child.sessions.add(this)
  }

  get busy(): boolean {
    return this.child.inFlight(this) || this.standalone.attached
  }

  /** A new stream for a POST's answers; the oldest finished streams are forgotten. */
  newStream(): EventStream {
    const stream = new EventStream()
    this.#streams.set(stream.id, stream)
    for (const [id, old] of this.#streams) {
      if (this.#streams.size <= REPLAY_LIMITS.streamsPerSession + 1) break
      if (old.finished) this.#streams.delete(id)
    }
    return stream
  }

  /** Serves a GET: resumes the stream `lastEventId` names, or opens the GET stream. */
  openGetStream(
    res: ServerResponse,
    lastEventId: string | undefined,
    idleTimeoutMs: number | undefined,
  ): 'ok' | 'conflict' | 'unknown_event' {
    if (lastEventId === undefined) {
      if (this.standalone.attached) return 'conflict'
      this.standalone.attach(res, {}, undefined, idleTimeoutMs)
      return 'ok'
    }
    const event = parseEventId(lastEventId)
    const stream = event && this.#streams.get(event.streamId)
    if (event === undefined || stream === undefined) return 'unknown_event'
    stream.attach(res, {}, event.seq, stream === this.standalone ? idleTimeoutMs : undefined)
    return 'ok'
  }
}

/**
 * One child process and what is in flight at it, for its sessions: one legacy MCP session, every session of
 * a shared child, or one subject's stateless requests.
 */
class StdioChild {
  readonly process: ChildProcessWithoutNullStreams
  readonly sessions = new Set<BridgeSession>()
  /** Keyed by the id the child sees. */
  readonly #pending = new Map<string, Pending>()
  /** The same, by session and client id (several when a stateless subject reuses an id), so no lookup scans all. */
  readonly #bySession = new Map<BridgeSession | undefined, Map<string, Set<Pending>>>()
  readonly #byChildToken = new Map<number, Pending>()
  /** Requests the child sent to a session: only that session may answer them. */
  readonly #childRequests = new Map<string, BridgeSession>()
  readonly #o: StdioUpstreamOptions
  readonly #log: Logger
  #nextChildId = 0
  #stdoutBuffer = ''
  /**
   * The child's `initialize` result when the bridge initialized it (a shared or stateless-era child): every
   * client `initialize` is answered from it, and a client's `notifications/initialized` would be a second one.
   */
  initialized: Record<string, unknown> | undefined
  exited = false
  onExit: () => void = () => {}

  constructor(options: StdioUpstreamOptions) {
    this.#o = options
    this.process = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: childEnvironment(process.env, options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    this.#log = options.logger.child({ pid: this.process.pid })
    this.process.stdout.setEncoding('utf8')
    this.process.stdout.on('data', (chunk: string) => this.#onStdout(chunk))
    this.process.stderr.setEncoding('utf8')
    this.process.stderr.on('data', (chunk: string) => {
      for (const line of chunk.split('\n'))
        if (line.trim()) this.#log.info({ stderr: line }, 'MCP server stderr')
    })
    this.process.stdin.on('error', () => {})
    this.process.on('error', (error) => {
      // The command line stays in the log: it may name paths and arguments the client has no business seeing.
      this.#log.error({ command: options.command, err: error.message }, 'could not start the MCP server')
      this.#onExit('could not be started')
    })
    this.process.on('exit', (code, signal) => this.#onExit(`exited with ${signal ?? `code ${code}`}`))
  }

  inFlight(session: BridgeSession): boolean {
    return this.#bySession.has(session)
  }

  #pendingOf(session: BridgeSession): Pending[] {
    return [...(this.#bySession.get(session)?.values() ?? [])].flatMap((same) => [...same])
  }

  /**
   * Sends a session's messages to the child: requests under the bridge's own ids (answers go to `sink`),
   * cancellations translated to those ids, answers to the child's own requests only if it asked this session.
   * An `initialize` of a child the bridge initialized is answered from its reply: it never reaches the child.
   */
  async forward(
    session: BridgeSession | undefined,
    sink: Receiver | undefined,
    messages: readonly JsonRpcMessage[],
  ): Promise<void> {
    const out: JsonRpcMessage[] = []
    const cached: JsonRpcMessage[] = []
    for (const message of messages) {
      if (isRequest(message) && sink !== undefined) {
        if (message.method === 'initialize' && this.initialized !== undefined)
          cached.push({ jsonrpc: '2.0', id: message.id, result: this.initialized })
        else out.push(this.#track(session, sink, message))
      } else if (message.method === 'notifications/cancelled') {
        const cancelled = this.#cancelledByClient(session, message)
        if (cancelled) out.push(cancelled)
      } else if (isResponse(message)) {
        const key = idKey(message.id as JsonRpcId)
        if (session !== undefined && this.#childRequests.get(key) === session) {
          this.#childRequests.delete(key)
          out.push(message)
        }
      } else if (!(message.method === 'notifications/initialized' && this.initialized !== undefined))
        out.push(message)
    }
    let lines: string[]
    try {
      lines = out.map(frame)
    } catch (error) {
      // Nothing was sent: no answer will come for what was tracked, and no timer may answer it later.
      for (const m of out) if (isRequest(m)) this.#settle(idKey(m.id as JsonRpcId))
      throw error
    }
    await this.#writeLines(lines)
    for (const answer of cached) sink?.send(answer)
  }

  /** The bridge's own request to the child; resolves with the answer (an error on timeout or exit). */
  async request(method: string, params: Record<string, unknown>): Promise<JsonRpcMessage> {
    const receiver = new InternalReceiver()
    await this.forward(undefined, receiver, [{ jsonrpc: '2.0', id: 0, method, params }])
    return receiver.answer
  }

  /** The client went away before its answers and cannot resume: tell the server to stop working on them. */
  cancel(session: BridgeSession, sink: PostSink): void {
    const mine = this.#bySession.get(session)
    for (const key of sink.waiting) {
      for (const p of [...(mine?.get(key) ?? [])]) {
        if (p.sink !== sink) continue
        this.#settle(idKey(p.childId))
        void this.#cancelUpstream(p.childId, 'client disconnected')
      }
    }
  }

  /** The session ended while the child goes on: its requests are cancelled there and answered with an error. */
  detach(session: BridgeSession): void {
    this.sessions.delete(session)
    for (const p of this.#pendingOf(session)) {
      this.#settle(idKey(p.childId))
      p.sink.send(rpcError(p.clientId, RPC.connectionClosed, 'the MCP session ended'))
      void this.#cancelUpstream(p.childId, 'session ended')
    }
    for (const [key, owner] of this.#childRequests) if (owner === session) this.#childRequests.delete(key)
    session.standalone.finish()
  }

  stop(graceMs: number): Promise<void> {
    if (this.exited) return Promise.resolve()
    return new Promise((resolve) => {
      const kill = setTimeout(() => this.process.kill('SIGKILL'), graceMs)
      this.process.once('exit', () => {
        clearTimeout(kill)
        resolve()
      })
      this.process.stdin.end()
      this.process.kill('SIGTERM')
    })
  }

  #track(session: BridgeSession | undefined, sink: Receiver, request: JsonRpcMessage): JsonRpcMessage {
    this.#nextChildId += 1
    const childId = this.#nextChildId
    const meta = request.params?._meta as Record<string, unknown> | undefined
    const clientToken = meta?.progressToken
    const p: Pending = {
      childId,
      clientId: request.id as JsonRpcId,
      session,
      sink,
      timer: this.#timeout(childId),
      clientToken,
      childToken: clientToken === undefined ? undefined : childId,
    }
    this.#pending.set(idKey(childId), p)
    let mine = this.#bySession.get(session)
    if (mine === undefined) {
      mine = new Map()
      this.#bySession.set(session, mine)
    }
    const same = mine.get(idKey(p.clientId))
    if (same === undefined) mine.set(idKey(p.clientId), new Set([p]))
    else same.add(p)
    if (p.childToken === undefined) return { ...request, id: childId }
    this.#byChildToken.set(p.childToken, p)
    return {
      ...request,
      id: childId,
      params: { ...request.params, _meta: { ...meta, progressToken: p.childToken } },
    }
  }

  /** The client cancelled one of its session's requests: stop waiting, and pass it on under the child's id. */
  #cancelledByClient(
    session: BridgeSession | undefined,
    message: JsonRpcMessage,
  ): JsonRpcMessage | undefined {
    const requestId = message.params?.requestId
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return undefined
    const [p] = this.#bySession.get(session)?.get(idKey(requestId)) ?? []
    if (p === undefined) return undefined
    this.#settle(idKey(p.childId))
    p.sink.drop(idKey(p.clientId))
    return { ...message, params: { ...message.params, requestId: p.childId } }
  }

  #write(messages: readonly JsonRpcMessage[]): Promise<void> {
    return this.#writeLines(messages.map(frame))
  }

  async #writeLines(lines: readonly string[]): Promise<void> {
    for (const text of lines) {
      if (this.exited || this.process.stdin.destroyed) return
      if (!this.process.stdin.write(text)) {
        await new Promise((resolve) => this.process.stdin.once('drain', resolve))
      }
    }
  }

  #timeout(childId: number): NodeJS.Timeout {
    return setTimeout(() => {
      const p = this.#settle(idKey(childId))
      if (p === undefined) return
      this.#o.metrics.upstreamErrors.inc({ kind: 'timeout' })
      this.#log.warn({ id: p.clientId }, 'the MCP server did not answer in time')
      p.sink.send(
        rpcError(
          p.clientId,
          RPC.requestTimeout,
          `the MCP server did not answer within ${this.#o.timeoutMs} ms`,
        ),
      )
      void this.#cancelUpstream(childId, 'timeout')
    }, this.#o.timeoutMs)
  }

  #cancelUpstream(requestId: JsonRpcId, reason: string): Promise<void> {
    return this.#write([{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason } }])
  }

  #settle(key: string): Pending | undefined {
    const p = this.#pending.get(key)
    if (p === undefined) return undefined
    clearTimeout(p.timer)
    this.#pending.delete(key)
    if (p.childToken !== undefined) this.#byChildToken.delete(p.childToken)
    const mine = this.#bySession.get(p.session)
    const same = mine?.get(idKey(p.clientId))
    same?.delete(p)
    if (same?.size === 0) mine?.delete(idKey(p.clientId))
    if (mine?.size === 0) this.#bySession.delete(p.session)
    return p
  }

  #onStdout(chunk: string): void {
    this.#stdoutBuffer += chunk
    let newline = this.#stdoutBuffer.indexOf('\n')
    while (newline !== -1) {
      const line = this.#stdoutBuffer.slice(0, newline).trim()
      this.#stdoutBuffer = this.#stdoutBuffer.slice(newline + 1)
      if (line) this.#onLine(line)
      newline = this.#stdoutBuffer.indexOf('\n')
    }
    if (this.#stdoutBuffer.length > this.#o.maxMessageBytes) {
      this.#log.warn(
        { bytes: this.#stdoutBuffer.length },
        'the MCP server wrote an over-long line; stopping it',
      )
      this.process.kill('SIGKILL')
    }
  }

  #onLine(line: string): void {
    let message: JsonRpcMessage
    try {
      message = JSON.parse(line)
      // `null` or a bare number is JSON too, and reading a field of it would throw in this handler.
      if (typeof message !== 'object' || message === null) throw new TypeError('not an object')
    } catch {
      this.#o.metrics.upstreamErrors.inc({ kind: 'garbage' })
      this.#log.warn({ line: line.slice(0, 200) }, 'the MCP server wrote a line that is not JSON; ignored')
      return
    }
    if (isResponse(message)) {
      const p = this.#settle(idKey(message.id as JsonRpcId))
      if (p !== undefined) this.#deliver(p.sink, { ...message, id: p.clientId })
      return
    }
    if (message.method === 'notifications/progress') this.#progress(message)
    else if (isRequest(message) || isNotification(message)) this.#toClient(message)
  }

  /**
   * Progress names the request by the token the bridge gave it, so it goes to the one client that asked,
   * under that client's token; progress for a token no request in flight holds goes nowhere.
   */
  #progress(message: JsonRpcMessage): void {
    const childToken = message.params?.progressToken
    const p = typeof childToken === 'number' ? this.#byChildToken.get(childToken) : undefined
    if (!p?.sink.open) {
      this.#unattributed(message)
      return
    }
    // Progress shows the server is alive: the request's timeout starts again, as the MCP SDK does.
    p.timer.refresh()
    this.#deliver(p.sink, { ...message, params: { ...message.params, progressToken: p.clientToken } })
  }

  #deliver(sink: Receiver, message: JsonRpcMessage): void {
    this.#pause(sink.send(message), sink)
  }

  #pause(flowing: boolean, target: { drained(): Promise<void> }): void {
    if (flowing || this.process.stdout.isPaused()) return
    this.process.stdout.pause()
    void target.drained().then(() => this.process.stdout.resume())
  }

  /**
   * Messages the child sends on its own. Over stdio nothing in them names the request they belong to (the
   * MCP SDK's `relatedRequestId` picks an HTTP stream and is not written to stdio), so the bridge knows whom
   * they are for only when the child has one session, ever: a child of its own. A list change is news for
   * every listening session. The rest of a shared child's (logging, resource updates, sampling, elicitation,
   * roots, pings) could be any user's, whatever is in flight when it comes: it goes nowhere.
   */
  #toClient(message: JsonRpcMessage): void {
    const method = message.method as string
    if (isNotification(message) && LIST_CHANGED.has(method)) {
      // Without the child's params: the news is the method, and nothing else goes to everyone.
      for (const session of this.sessions)
        if (session.listening) session.standalone.write({ jsonrpc: '2.0', method })
      return
    }
    const session = this.#recipient()
    if (session === undefined) {
      this.#unattributed(message)
      return
    }
    if (isRequest(message)) this.#childRequests.set(idKey(message.id as JsonRpcId), session)
    const sink = session.standalone.attached
      ? undefined
      : this.#pendingOf(session)
          .map((p) => p.sink)
          .find((s): s is PostSink => s instanceof PostSink && s.stream?.attached === true)
    if (sink !== undefined) this.#deliver(sink, message)
    else this.#pause(session.standalone.write(message), session.standalone)
  }

  /** The session a child's own message is for: the only one of a child of its own, if it listens. */
  #recipient(): BridgeSession | undefined {
    if (this.#o.shared || this.sessions.size !== 1) return undefined
    const [session] = this.sessions
    return session?.listening ? session : undefined
  }

  /** A message no session can be sent: dropped (its content is never logged); a request is refused. */
  #unattributed(message: JsonRpcMessage): void {
    this.#log.debug(
      { method: message.method },
      'a message of the MCP server that no session can take; dropped',
    )
    if (isRequest(message))
      void this.#write([rpcError(message.id, RPC.methodNotFound, 'the client cannot be reached')])
  }

  #onExit(reason: string): void {
    if (this.exited) return
    this.exited = true
    this.#log.warn({ reason }, 'MCP server process ended')
    for (const key of [...this.#pending.keys()]) {
      const p = this.#settle(key)
      p?.sink.send(rpcError(p.clientId, RPC.connectionClosed, `the MCP server process ${reason}`))
    }
    for (const session of this.sessions) session.standalone.finish()
    this.onExit()
  }
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
  readonly #o: StdioUpstreamOptions
  readonly #sessions = new Map<string, BridgeSession>()
  /** Stateless-era sessions by subject; each is also a registry entry, so it is reaped when idle. */
  readonly #subjects = new Map<string, Promise<InitializedSession>>()
  /** The shared child, from its first session until its last one is gone or it exits. */
  #shared: SharedChild | undefined

  constructor(options: StdioUpstreamOptions) {
    this.#o = options
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

  async post(x: McpExchange): Promise<void> {
    if (isStatelessEra(x.req.headers['mcp-protocol-version'])) return this.#postStateless(x)
    const { res } = x
    let session: BridgeSession | undefined
    if (x.sessionId === undefined) {
      if (!x.messages.some((m) => m.method === 'initialize')) {
        sendRpcError(res, 400, RPC.connectionClosed, 'Bad Request: no Mcp-Session-Id; send initialize first')
        return
      }
      if (this.#o.shared) return this.#joinShared(x)
      session = this.#spawn(x.principal?.key, true)
    } else {
      session = this.#sessions.get(x.sessionId)
      if (session === undefined) {
        sendRpcError(res, 404, RPC.connectionClosed, 'Session not found')
        return
      }
    }
    const header: Record<string, string> = x.sessionId === undefined ? { 'mcp-session-id': session.id } : {}
    await this.#exchange(x, session, header, (m) => m)
  }

  async get(x: McpExchange): Promise<void> {
    if (this.#refuseStateless(x)) return
    const session = this.#existingSession(x)
    if (session === undefined) return
    const lastEventId = x.req.headers['last-event-id']
    const opened = session.openGetStream(
      x.res,
      typeof lastEventId === 'string' ? lastEventId : undefined,
      this.#o.streamIdleTimeoutMs,
    )
    if (opened === 'conflict') {
      sendRpcError(x.res, 409, RPC.connectionClosed, 'Conflict: this session already has a GET stream')
    } else if (opened === 'unknown_event') {
      sendRpcError(
        x.res,
        400,
        RPC.connectionClosed,
        'Bad Request: Last-Event-ID names no stream this session keeps',
      )
    } else {
      this.#o.metrics.streams.inc()
      x.res.on('close', () => this.#o.metrics.streams.dec())
    }
  }

  async delete(x: McpExchange): Promise<void> {
    if (this.#refuseStateless(x)) return
    const session = this.#existingSession(x)
    if (session === undefined) return
    this.endSession(session.id)
    sendStatus(x.res, 200)
  }

  /** The session a GET or DELETE names; otherwise answers 400 (none named) or 404 (unknown) and gives undefined. */
  #existingSession(x: McpExchange): BridgeSession | undefined {
    const session = x.sessionId === undefined ? undefined : this.#sessions.get(x.sessionId)
    if (session === undefined) {
      sendRpcError(x.res, x.sessionId === undefined ? 400 : 404, RPC.connectionClosed, 'Session not found')
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
    void child.stop(2000)
  }

  ready(): boolean {
    return true
  }

  async close(graceMs: number): Promise<void> {
    const children = new Set([...this.#sessions.values()].map((s) => s.child))
    if (this.#shared) children.add(this.#shared.child)
    await Promise.all([...children].map((child) => child.stop(graceMs)))
  }

  /**
   * Relays one POST: requests to the child, their answers (through `rewrite`) back as JSON or as an SSE
   * stream. A legacy SSE stream can be resumed, so its requests go on when the client goes away (their
   * timeout still applies); a JSON answer, or any stateless-era one, cannot, so those are cancelled.
   */
  async #exchange(
    x: McpExchange,
    session: BridgeSession,
    header: Record<string, string>,
    rewrite: (message: JsonRpcMessage, method: string | undefined) => JsonRpcMessage,
  ): Promise<void> {
    const { res } = x
    const { child } = session
    const requests = x.messages.filter(isRequest)
    if (requests.length === 0) {
      await child.forward(session, undefined, x.messages)
      sendStatus(res, 202)
      return
    }
    const resumable = session.listening
    const sse =
      acceptsEventStream(x.req) &&
      (x.messages.some((m) => m.method === 'tools/call') ||
        !(x.req.headers.accept ?? '').includes('application/json'))
    const stream = !sse ? undefined : resumable ? session.newStream() : new EventStream()
    const sink = new PostSink(
      res,
      requests.map((m) => m.id as JsonRpcId),
      stream,
      x.batch,
      header,
    )
    const methods = new Map(requests.map((m) => [idKey(m.id as JsonRpcId), m.method]))
    const send = sink.send.bind(sink)
    sink.send = (m) => {
      if (!isResponse(m)) return send(m)
      const method = methods.get(idKey(m.id as JsonRpcId))
      const filtered =
        method === 'tools/list' && m.result !== undefined
          ? { ...m, result: this.#o.policy.filterToolsList(m.result, x.principal?.token) }
          : m
      return send(rewrite(filtered, method))
    }
    this.#o.metrics.streams.inc()
    const started = performance.now()
    const ended = new Promise<void>((resolve) => {
      sink.onDone = resolve
      res.on('close', resolve)
    })
    try {
      await child.forward(session, sink, x.messages)
      await ended
    } finally {
      this.#o.metrics.streams.dec()
    }
    this.#o.metrics.upstreamLatency.observe((performance.now() - started) / 1000)
    if (sink.open && !(resumable && sink.stream !== undefined)) child.cancel(session, sink)
  }

  /** A new session on the shared child: its `initialize` is answered with the bridge's own one's reply. */
  async #joinShared(x: McpExchange): Promise<void> {
    const [initialize] = x.messages
    if (x.messages.length !== 1 || initialize === undefined || !isRequest(initialize)) {
      sendRpcError(x.res, 400, RPC.invalidRequest, 'Bad Request: initialize must be sent alone')
      return
    }
    let joined: InitializedSession
    try {
      joined = await this.#sharedSession(x.principal?.key, true)
    } catch (error) {
      this.#o.logger.warn({ detail: (error as Error).message }, 'the MCP server could not be initialized')
      sendRpcError(x.res, 502, RPC.internalError, 'the MCP server could not be initialized', initialize.id)
      return
    }
    sendJson(
      x.res,
      200,
      { jsonrpc: '2.0', id: initialize.id, result: joined.initialized },
      { 'mcp-session-id': joined.session.id },
    )
  }

  async #postStateless(x: McpExchange): Promise<void> {
    const { res } = x
    const version = x.req.headers['mcp-protocol-version'] as string
    const id = singleId(x.messages)
    if (!STATELESS_VERSIONS.includes(version)) {
      sendJson(res, 400, {
        jsonrpc: '2.0',
        id,
        error: {
          code: RPC.unsupportedProtocolVersion,
          message: `unsupported protocol version ${version}`,
          data: { supported: [...STATELESS_VERSIONS, ...LEGACY_VERSIONS], requested: version },
        },
      })
      return
    }
    const mismatch = statelessHeaderMismatch(x, version)
    if (mismatch) {
      sendRpcError(res, 400, RPC.headerMismatch, mismatch, id)
      return
    }
    let child: InitializedSession
    try {
      child = await this.#statelessChild(x.principal?.key)
    } catch (error) {
      this.#o.logger.warn({ detail: (error as Error).message }, 'the MCP server could not be initialized')
      sendRpcError(res, 502, RPC.internalError, 'the MCP server could not be initialized', id)
      return
    }
    this.#o.sessions.use(child.session.id, x.principal?.key)
    const [message] = x.messages
    if (x.messages.length === 1 && message?.method === 'server/discover' && isRequest(message)) {
      sendJson(res, 200, { jsonrpc: '2.0', id: message.id, result: discoverResult(child.initialized) })
      return
    }
    await this.#exchange(x, child.session, {}, statelessResult)
  }

  /** GET and DELETE have no meaning without sessions (the 2026-07-28 transport answers them with 405). */
  #refuseStateless(x: McpExchange): boolean {
    if (!isStatelessEra(x.req.headers['mcp-protocol-version'])) return false
    x.res.setHeader('allow', 'POST')
    sendRpcError(
      x.res,
      405,
      RPC.connectionClosed,
      'Method Not Allowed: the stateless protocol has no sessions',
    )
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
    if (this.#o.shared) return this.#sharedSession(owner, false)
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
    this.#o.logger.info({ shared: true, pid: child.process.pid }, 'MCP server process started')
    const initialized = initializeChild(child).catch((error: unknown) => {
      if (this.#shared?.child === child) this.#shared = undefined
      void child.stop(2000)
      throw error
    })
    return { child, initialized }
  }

  /** A session with a child of its own. */
  #spawn(owner: string | undefined, listening: boolean): BridgeSession {
    const session = this.#open(this.#startChild(), owner, listening)
    this.#o.logger.info({ session: session.id, pid: session.child.process.pid }, 'MCP server process started')
    return session
  }

  #startChild(): StdioChild {
    const child = new StdioChild(this.#o)
    child.onExit = () => {
      if (this.#shared?.child === child) this.#shared = undefined
      for (const session of child.sessions) this.#forget(session)
    }
    return child
  }

  #open(child: StdioChild, owner: string | undefined, listening: boolean): BridgeSession {
    const session = new BridgeSession(child, listening)
    this.#sessions.set(session.id, session)
    this.#o.sessions.bind(session.id, owner)
    return session
  }

  #forget(session: BridgeSession): void {
    this.#sessions.delete(session.id)
    this.#o.sessions.delete(session.id)
    session.onEnd()
  }
}

/** The session-era revisions the bridge offers a child it initializes itself, newest first. */
const LEGACY_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26'] as const

/**
 * The `initialize` the bridge sends a child no one client initializes: a stateless-era one (that era has
 * none) or a shared one (no user's client information or capabilities may speak for all). No capabilities:
 * the bridge cannot tell whom a shared child's sampling, elicitation or roots requests are for.
 */
const BRIDGE_INITIALIZE = {
  protocolVersion: LEGACY_VERSIONS[0],
  capabilities: {},
  clientInfo: { name: 'gatehouse', version: '1' },
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

/** Initializes a child for its clients, as the bridge; resolves with its `initialize` result. */
async function initializeChild(child: StdioChild): Promise<Record<string, unknown>> {
  const reply = await child.request('initialize', BRIDGE_INITIALIZE)
  if (reply.error !== undefined || typeof reply.result !== 'object' || reply.result === null)
    throw new Error(`initialize failed: ${reply.error?.message ?? 'no result'}`)
  await child.forward(undefined, undefined, [{ jsonrpc: '2.0', method: 'notifications/initialized' }])
  child.initialized = reply.result as Record<string, unknown>
  return child.initialized
}

/**
 * 2026-07-28 requests name their method in `Mcp-Method` and their version in `_meta` as well as in the
 * header: all must agree (the gateway already checked that a present `Mcp-Method` matches the body).
 */
function statelessHeaderMismatch(x: McpExchange, version: string): string | undefined {
  const requests = x.messages.filter(isRequest)
  if (requests.length > 0 && x.req.headers['mcp-method'] === undefined)
    return 'the Mcp-Method header is required'
  for (const m of requests) {
    const meta = m.params?._meta as Record<string, unknown> | undefined
    if (meta?.[PROTOCOL_VERSION_META] !== version)
      return 'the MCP-Protocol-Version header does not match the request _meta'
  }
  return undefined
}

/** Results of operations the 2026-07-28 revision lets clients cache; the bridge never lets them share. */
const CACHEABLE = new Set([
  'tools/list',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'server/discover',
])

/**
 * A 2025 server's result in 2026-07-28 form: `resultType` is required, and cacheable results need a
 * lifetime and scope; `private` with no lifetime, as `tools/list` is filtered for each token.
 */
function statelessResult(message: JsonRpcMessage, method: string | undefined): JsonRpcMessage {
  const result = message.result as Record<string, unknown> | undefined
  if (typeof result !== 'object' || result === null) return message
  const stamped: Record<string, unknown> = { resultType: 'complete', ...result }
  if (method !== undefined && CACHEABLE.has(method)) {
    stamped.ttlMs ??= 0
    stamped.cacheScope ??= 'private'
  }
  return { ...message, result: stamped }
}

function discoverResult(initialized: Record<string, unknown>): JsonRpcMessage['result'] {
  const { capabilities, instructions, serverInfo } = initialized
  return statelessResult(
    {
      jsonrpc: '2.0',
      id: 0,
      result: {
        supportedVersions: STATELESS_VERSIONS,
        capabilities: capabilities ?? {},
        ...(instructions === undefined ? {} : { instructions }),
        _meta: { 'io.modelcontextprotocol/serverInfo': serverInfo },
      },
    },
    'server/discover',
  ).result
}
