import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { acceptsEventStream, sendJson, sendRpcError, singleId } from './http.ts'
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
    if (res === undefined || res.destroyed) return true
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
    else if (this.#collected.length === 0) this.#res.writeHead(202, this.#sessionHeader).end()
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
 * requests of clients that share a child (one subject's stateless requests) never collide; the client's
 * own values come back on the answers.
 */
interface Pending {
  childId: number
  clientId: JsonRpcId
  sink: Receiver
  timer: NodeJS.Timeout
  clientToken: unknown
  childToken: number | undefined
}

/** The bridge's own requests to a child (the stateless era's `initialize`). */
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
 * One child process and what is in flight at it. A legacy MCP session has a child of its own; in the
 * stateless era a subject's requests share one (`unsolicited: 'refuse'`, as no client listens for the rest).
 */
class StdioSession {
  readonly id = randomUUID()
  readonly child: ChildProcessWithoutNullStreams
  /** Keyed by the id the child sees. */
  readonly pending = new Map<string, Pending>()
  readonly #byChildToken = new Map<number, Pending>()
  /** Requests the child sent to the client: only the session they went to may answer them. */
  readonly #childRequests = new Set<string>()
  /** Messages not tied to a request: the GET stream, kept while no GET is open. */
  readonly #standalone = new EventStream()
  readonly #streams = new Map<string, EventStream>([[this.#standalone.id, this.#standalone]])
  readonly #o: StdioUpstreamOptions
  readonly #log: Logger
  readonly #unsolicited: 'route' | 'refuse'
  #nextChildId = 0
  #stdoutBuffer = ''
  exited = false
  onExit: () => void = () => {}

  constructor(options: StdioUpstreamOptions, unsolicited: 'route' | 'refuse' = 'route') {
    this.#o = options
    this.#unsolicited = unsolicited
    this.#log = options.logger.child({ session: this.id })
    this.child = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    this.child.stdout.setEncoding('utf8')
    this.child.stdout.on('data', (chunk: string) => this.#onStdout(chunk))
    this.child.stderr.setEncoding('utf8')
    this.child.stderr.on('data', (chunk: string) => {
      for (const line of chunk.split('\n'))
        if (line.trim()) this.#log.info({ stderr: line }, 'MCP server stderr')
    })
    this.child.stdin.on('error', () => {})
    this.child.on('error', (error) => this.#onExit(`could not run ${options.command}: ${error.message}`))
    this.child.on('exit', (code, signal) => this.#onExit(`exited with ${signal ?? `code ${code}`}`))
  }

  get busy(): boolean {
    return this.pending.size > 0 || this.#standalone.attached
  }

  /** A legacy session's streams can be resumed; a stateless client has nothing to resume them with. */
  get resumable(): boolean {
    return this.#unsolicited === 'route'
  }

  /**
   * Sends a client's messages to the child: requests under the bridge's own ids (answers go to `sink`),
   * cancellations translated to those ids, answers to the child's own requests only if it asked.
   */
  async forward(sink: Receiver | undefined, messages: readonly JsonRpcMessage[]): Promise<void> {
    const out: JsonRpcMessage[] = []
    for (const message of messages) {
      if (isRequest(message) && sink !== undefined) out.push(this.#track(sink, message))
      else if (message.method === 'notifications/cancelled') {
        const cancelled = this.#cancelledByClient(message)
        if (cancelled) out.push(cancelled)
      } else if (isResponse(message)) {
        if (this.#childRequests.delete(idKey(message.id as JsonRpcId))) out.push(message)
      } else out.push(message)
    }
    await this.#write(out)
  }

  /** The bridge's own request to the child; resolves with the answer (an error on timeout or exit). */
  async request(method: string, params: Record<string, unknown>): Promise<JsonRpcMessage> {
    const receiver = new InternalReceiver()
    await this.forward(receiver, [{ jsonrpc: '2.0', id: 0, method, params }])
    return receiver.answer
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
  openGetStream(res: ServerResponse, lastEventId: string | undefined): 'ok' | 'conflict' | 'unknown_event' {
    if (lastEventId === undefined) {
      if (this.#standalone.attached) return 'conflict'
      this.#standalone.attach(res, {}, undefined, this.#o.streamIdleTimeoutMs)
      return 'ok'
    }
    const event = parseEventId(lastEventId)
    const stream = event && this.#streams.get(event.streamId)
    if (event === undefined || stream === undefined) return 'unknown_event'
    stream.attach(res, {}, event.seq, stream === this.#standalone ? this.#o.streamIdleTimeoutMs : undefined)
    return 'ok'
  }

  /** The client went away before its answers and cannot resume: tell the server to stop working on them. */
  cancel(sink: Receiver): void {
    for (const [key, p] of this.pending) {
      if (p.sink !== sink) continue
      this.#settle(key)
      void this.#cancelUpstream(p.childId, 'client disconnected')
    }
  }

  stop(graceMs: number): Promise<void> {
    if (this.exited) return Promise.resolve()
    return new Promise((resolve) => {
      const kill = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
      this.child.once('exit', () => {
        clearTimeout(kill)
        resolve()
      })
      this.child.stdin.end()
      this.child.kill('SIGTERM')
    })
  }

  #track(sink: Receiver, request: JsonRpcMessage): JsonRpcMessage {
    this.#nextChildId += 1
    const childId = this.#nextChildId
    const meta = request.params?._meta as Record<string, unknown> | undefined
    const clientToken = meta?.progressToken
    const p: Pending = {
      childId,
      clientId: request.id as JsonRpcId,
      sink,
      timer: this.#timeout(childId),
      clientToken,
      childToken: clientToken === undefined ? undefined : childId,
    }
    this.pending.set(idKey(childId), p)
    if (p.childToken === undefined) return { ...request, id: childId }
    this.#byChildToken.set(p.childToken, p)
    return {
      ...request,
      id: childId,
      params: { ...request.params, _meta: { ...meta, progressToken: p.childToken } },
    }
  }

  /** The client cancelled a request: stop waiting, and pass the cancellation on under the child's id. */
  #cancelledByClient(message: JsonRpcMessage): JsonRpcMessage | undefined {
    const requestId = message.params?.requestId
    for (const [key, p] of this.pending) {
      if (p.clientId !== requestId) continue
      this.#settle(key)
      p.sink.drop(idKey(p.clientId))
      return { ...message, params: { ...message.params, requestId: p.childId } }
    }
    return undefined
  }

  async #write(messages: readonly JsonRpcMessage[]): Promise<void> {
    for (const message of messages) {
      if (this.exited || this.child.stdin.destroyed) return
      if (!this.child.stdin.write(`${JSON.stringify(message)}\n`)) {
        await new Promise((resolve) => this.child.stdin.once('drain', resolve))
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
    const p = this.pending.get(key)
    if (p === undefined) return undefined
    clearTimeout(p.timer)
    this.pending.delete(key)
    if (p.childToken !== undefined) this.#byChildToken.delete(p.childToken)
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
      this.child.kill('SIGKILL')
    }
  }

  #onLine(line: string): void {
    let message: JsonRpcMessage
    try {
      message = JSON.parse(line)
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
    const childToken = (message.params as { progressToken?: unknown } | undefined)?.progressToken
    const p =
      message.method === 'notifications/progress' && typeof childToken === 'number'
        ? this.#byChildToken.get(childToken)
        : undefined
    if (p?.sink.open) {
      // Progress shows the server is alive: the request's timeout starts again, as the MCP SDK does.
      p.timer.refresh()
      this.#deliver(p.sink, { ...message, params: { ...message.params, progressToken: p.clientToken } })
    } else if (isRequest(message) || isNotification(message)) this.#toClient(message)
  }

  #deliver(sink: Receiver, message: JsonRpcMessage): void {
    this.#pause(sink.send(message), sink)
  }

  #pause(flowing: boolean, target: { drained(): Promise<void> }): void {
    if (flowing || this.child.stdout.isPaused()) return
    this.child.stdout.pause()
    void target.drained().then(() => this.child.stdout.resume())
  }

  /**
   * Messages not tied to a request go to the GET stream, or to a POST stream a client reads, or wait. With
   * no one to hear them (stateless clients), notifications are dropped and requests answered with an error
   * so the server does not wait forever.
   */
  #toClient(message: JsonRpcMessage): void {
    if (this.#unsolicited === 'refuse') {
      if (isRequest(message))
        void this.#write([rpcError(message.id, RPC.methodNotFound, 'the client cannot be reached')])
      return
    }
    if (isRequest(message)) this.#childRequests.add(idKey(message.id as JsonRpcId))
    const sink = this.#standalone.attached
      ? undefined
      : [...this.pending.values()]
          .map((p) => p.sink)
          .find((s): s is PostSink => s instanceof PostSink && s.stream?.attached === true)
    if (sink !== undefined) this.#deliver(sink, message)
    else this.#pause(this.#standalone.write(message), this.#standalone)
  }

  #onExit(reason: string): void {
    if (this.exited) return
    this.exited = true
    this.#log.warn({ reason }, 'MCP server process ended')
    for (const key of [...this.pending.keys()]) {
      const p = this.#settle(key)
      p?.sink.send(rpcError(p.clientId, RPC.connectionClosed, `the MCP server process ${reason}`))
    }
    this.#standalone.finish()
    this.onExit()
  }
}

/**
 * The stdio bridge: Streamable HTTP outside, newline-delimited JSON-RPC to a child inside, one child per
 * MCP session. The session id is minted here on `initialize`. A child that dies fails its pending requests
 * with a JSON-RPC error and takes its session with it: the next `initialize` spawns a fresh one.
 *
 * Stateless-era (2026-07-28) requests carry no session: each subject gets one child, which the bridge
 * initializes itself (2025 servers know nothing else), and `server/discover` is answered from that reply.
 */
export class StdioUpstream implements Upstream {
  readonly #o: StdioUpstreamOptions
  readonly #sessions = new Map<string, StdioSession>()
  /** Stateless-era children by subject; each is also a registry entry, so it is reaped when idle. */
  readonly #subjects = new Map<string, Promise<StatelessChild>>()

  constructor(options: StdioUpstreamOptions) {
    this.#o = options
  }

  async post(x: McpExchange): Promise<void> {
    if (isStatelessEra(x.req.headers['mcp-protocol-version'])) return this.#postStateless(x)
    const { res } = x
    let session: StdioSession | undefined
    if (x.sessionId === undefined) {
      if (!x.messages.some((m) => m.method === 'initialize')) {
        sendRpcError(res, 400, RPC.connectionClosed, 'Bad Request: no Mcp-Session-Id; send initialize first')
        return
      }
      session = this.#spawn(x.principal?.key)
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
    const session = x.sessionId === undefined ? undefined : this.#sessions.get(x.sessionId)
    if (session === undefined) {
      sendRpcError(x.res, x.sessionId === undefined ? 400 : 404, RPC.connectionClosed, 'Session not found')
      return
    }
    const lastEventId = x.req.headers['last-event-id']
    const opened = session.openGetStream(x.res, typeof lastEventId === 'string' ? lastEventId : undefined)
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
    const session = x.sessionId === undefined ? undefined : this.#sessions.get(x.sessionId)
    if (session === undefined) {
      sendRpcError(x.res, x.sessionId === undefined ? 400 : 404, RPC.connectionClosed, 'Session not found')
      return
    }
    this.endSession(session.id)
    x.res.writeHead(200).end()
  }

  busy(sessionId: string): boolean {
    return this.#sessions.get(sessionId)?.busy ?? false
  }

  endSession(sessionId: string): void {
    const session = this.#sessions.get(sessionId)
    this.#forget(sessionId)
    void session?.stop(2000)
  }

  ready(): boolean {
    return true
  }

  async close(graceMs: number): Promise<void> {
    const sessions = [...this.#sessions.values()]
    await Promise.all(sessions.map((s) => s.stop(graceMs)))
  }

  /**
   * Relays one POST: requests to the child, their answers (through `rewrite`) back as JSON or as an SSE
   * stream. A legacy SSE stream can be resumed, so its requests go on when the client goes away (their
   * timeout still applies); a JSON answer, or any stateless-era one, cannot, so those are cancelled.
   */
  async #exchange(
    x: McpExchange,
    session: StdioSession,
    header: Record<string, string>,
    rewrite: (message: JsonRpcMessage, method: string | undefined) => JsonRpcMessage,
  ): Promise<void> {
    const { res } = x
    const requests = x.messages.filter(isRequest)
    if (requests.length === 0) {
      await session.forward(undefined, x.messages)
      res.writeHead(202).end()
      return
    }
    const resumable = session.resumable
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
    await session.forward(sink, x.messages)
    await ended
    this.#o.metrics.streams.dec()
    this.#o.metrics.upstreamLatency.observe((performance.now() - started) / 1000)
    if (sink.open && !(resumable && sink.stream !== undefined)) session.cancel(sink)
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
    let child: StatelessChild
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

  /** The subject's child, spawned and initialized on first use; `anonymous` for anonymous discovery. */
  #statelessChild(owner: string | undefined): Promise<StatelessChild> {
    const subject = owner ?? 'anonymous'
    const existing = this.#subjects.get(subject)
    if (existing) return existing
    const session = this.#spawn(owner, 'refuse')
    const forget = () => {
      if (this.#subjects.get(subject) === started) this.#subjects.delete(subject)
    }
    const started = initializeChild(session).catch((error: unknown) => {
      forget()
      this.endSession(session.id)
      throw error
    })
    session.onExit = () => {
      forget()
      this.#forget(session.id)
    }
    this.#subjects.set(subject, started)
    return started
  }

  #spawn(owner: string | undefined, unsolicited: 'route' | 'refuse' = 'route'): StdioSession {
    const session = new StdioSession(this.#o, unsolicited)
    this.#sessions.set(session.id, session)
    this.#o.sessions.bind(session.id, owner)
    session.onExit = () => this.#forget(session.id)
    this.#o.logger.info({ session: session.id, pid: session.child.pid }, 'MCP server process started')
    return session
  }

  #forget(sessionId: string): void {
    this.#sessions.delete(sessionId)
    this.#o.sessions.delete(sessionId)
  }
}

/** The session-era revisions the bridge offers a child it initializes itself, newest first. */
const LEGACY_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26'] as const

interface StatelessChild {
  session: StdioSession
  /** The child's `initialize` result. */
  initialized: Record<string, unknown>
}

async function initializeChild(session: StdioSession): Promise<StatelessChild> {
  const reply = await session.request('initialize', {
    protocolVersion: LEGACY_VERSIONS[0],
    capabilities: {},
    clientInfo: { name: 'gatehouse', version: '1' },
  })
  if (reply.error !== undefined || typeof reply.result !== 'object' || reply.result === null)
    throw new Error(`initialize failed: ${reply.error?.message ?? 'no result'}`)
  await session.forward(undefined, [{ jsonrpc: '2.0', method: 'notifications/initialized' }])
  return { session, initialized: reply.result as Record<string, unknown> }
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
