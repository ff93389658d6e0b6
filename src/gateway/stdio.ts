import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { acceptsEventStream, sendJson, sendRpcError } from './http.ts'
import {
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  RPC,
  rpcError,
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
  finished = false

  get attached(): boolean {
    return this.#res !== undefined && !this.#res.destroyed
  }

  /** Serves the stream on `res` from the event after `afterSeq`; a response it was on before is ended. */
  attach(res: ServerResponse, headers: Record<string, string>, afterSeq = this.#sent): void {
    const previous = this.#res
    this.#res = res
    previous?.end()
    res.writeHead(200, { ...SSE_HEADERS, ...headers })
    res.flushHeaders()
    for (const event of this.#events) if (event.seq > afterSeq) res.write(event.text)
    this.#sent = this.#seq
    res.on('close', () => {
      if (this.#res === res) this.#res = undefined
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
class PostSink {
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

interface Pending {
  id: JsonRpcId
  sink: PostSink
  timer: NodeJS.Timeout
  progressToken: unknown
}

/** One MCP session: one child process, isolated from every other session. */
class StdioSession {
  readonly id = randomUUID()
  readonly child: ChildProcessWithoutNullStreams
  readonly pending = new Map<string, Pending>()
  readonly #progress = new Map<unknown, PostSink>()
  /** Messages not tied to a request: the GET stream, kept while no GET is open. */
  readonly #standalone = new EventStream()
  readonly #streams = new Map<string, EventStream>([[this.#standalone.id, this.#standalone]])
  readonly #o: StdioUpstreamOptions
  readonly #log: Logger
  #stdoutBuffer = ''
  exited = false
  onExit: () => void = () => {}

  constructor(options: StdioUpstreamOptions) {
    this.#o = options
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

  async write(messages: readonly JsonRpcMessage[]): Promise<void> {
    for (const message of messages) {
      if (this.exited || this.child.stdin.destroyed) return
      if (!this.child.stdin.write(`${JSON.stringify(message)}\n`)) {
        await new Promise((resolve) => this.child.stdin.once('drain', resolve))
      }
    }
  }

  expect(sink: PostSink, requests: readonly JsonRpcMessage[]): void {
    for (const request of requests) {
      const key = idKey(request.id as JsonRpcId)
      const progressToken = (request.params?._meta as { progressToken?: unknown } | undefined)?.progressToken
      if (progressToken !== undefined) this.#progress.set(progressToken, sink)
      const id = request.id as JsonRpcId
      this.pending.set(key, { id, sink, timer: this.#timeout(id), progressToken })
    }
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
      this.#standalone.attach(res, {})
      return 'ok'
    }
    const event = parseEventId(lastEventId)
    const stream = event && this.#streams.get(event.streamId)
    if (event === undefined || stream === undefined) return 'unknown_event'
    stream.attach(res, {}, event.seq)
    return 'ok'
  }

  /** The client cancelled a request (`notifications/cancelled`, which the child gets too): stop waiting. */
  cancelledByClient(requestId: unknown): void {
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return
    const key = idKey(requestId)
    this.#settle(key)?.sink.drop(key)
  }

  /** The client went away before its answers and cannot resume: tell the server to stop working on them. */
  cancel(sink: PostSink): void {
    for (const [key, p] of this.pending) {
      if (p.sink !== sink) continue
      this.#settle(key)
      void this.#cancelUpstream(p.id, 'client disconnected')
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

  #timeout(id: JsonRpcId): NodeJS.Timeout {
    return setTimeout(() => {
      const p = this.pending.get(idKey(id))
      if (p === undefined) return
      this.#o.metrics.upstreamErrors.inc({ kind: 'timeout' })
      this.#log.warn({ id }, 'the MCP server did not answer in time')
      this.#settle(idKey(id))
      p.sink.send(
        rpcError(id, RPC.requestTimeout, `the MCP server did not answer within ${this.#o.timeoutMs} ms`),
      )
      void this.#cancelUpstream(id, 'timeout')
    }, this.#o.timeoutMs)
  }

  #cancelUpstream(requestId: JsonRpcId, reason: string): Promise<void> {
    return this.write([{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason } }])
  }

  #settle(key: string): Pending | undefined {
    const p = this.pending.get(key)
    if (p === undefined) return undefined
    clearTimeout(p.timer)
    this.pending.delete(key)
    if (p.progressToken !== undefined) this.#progress.delete(p.progressToken)
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
      const key = idKey(message.id as JsonRpcId)
      const p = this.#settle(key)
      if (p === undefined) return
      this.#deliver(p.sink, message)
      return
    }
    const progressToken = (message.params as { progressToken?: unknown } | undefined)?.progressToken
    const sink = message.method === 'notifications/progress' ? this.#progress.get(progressToken) : undefined
    if (sink?.open) {
      // Progress shows the server is alive: the request's timeout starts again, as the MCP SDK does.
      for (const p of this.pending.values()) if (p.progressToken === progressToken) p.timer.refresh()
      this.#deliver(sink, message)
    } else if (isRequest(message) || isNotification(message)) this.#toClient(message)
  }

  #deliver(sink: PostSink, message: JsonRpcMessage): void {
    this.#pause(sink.send(message), sink)
  }

  #pause(flowing: boolean, target: { drained(): Promise<void> }): void {
    if (flowing || this.child.stdout.isPaused()) return
    this.child.stdout.pause()
    void target.drained().then(() => this.child.stdout.resume())
  }

  /** Messages not tied to a request go to the GET stream, or to a POST stream a client reads, or wait. */
  #toClient(message: JsonRpcMessage): void {
    const sink = this.#standalone.attached
      ? undefined
      : [...this.pending.values()].map((p) => p.sink).find((s) => s.stream?.attached)
    if (sink !== undefined) this.#deliver(sink, message)
    else this.#pause(this.#standalone.write(message), this.#standalone)
  }

  #onExit(reason: string): void {
    if (this.exited) return
    this.exited = true
    this.#log.warn({ reason }, 'MCP server process ended')
    for (const key of [...this.pending.keys()]) {
      const p = this.#settle(key)
      p?.sink.send(rpcError(p.id, RPC.connectionClosed, `the MCP server process ${reason}`))
    }
    this.#standalone.finish()
    this.onExit()
  }
}

/**
 * The stdio bridge: Streamable HTTP outside, newline-delimited JSON-RPC to a child inside, one child per
 * MCP session. The session id is minted here on `initialize`. A child that dies fails its pending requests
 * with a JSON-RPC error and takes its session with it: the next `initialize` spawns a fresh one.
 */
export class StdioUpstream implements Upstream {
  readonly #o: StdioUpstreamOptions
  readonly #sessions = new Map<string, StdioSession>()

  constructor(options: StdioUpstreamOptions) {
    this.#o = options
  }

  async post(x: McpExchange): Promise<void> {
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
    const requests = x.messages.filter(isRequest)
    if (requests.length === 0) {
      await session.write(x.messages)
      for (const m of x.messages)
        if (m.method === 'notifications/cancelled') session.cancelledByClient(m.params?.requestId)
      res.writeHead(202).end()
      return
    }
    const sse =
      acceptsEventStream(x.req) &&
      (x.messages.some((m) => m.method === 'tools/call') ||
        !(x.req.headers.accept ?? '').includes('application/json'))
    const header: Record<string, string> = x.sessionId === undefined ? { 'mcp-session-id': session.id } : {}
    const sink = new PostSink(
      res,
      requests.map((m) => m.id as JsonRpcId),
      sse ? session.newStream() : undefined,
      x.batch,
      header,
    )
    const listIds = new Set(
      requests.filter((m) => m.method === 'tools/list').map((m) => idKey(m.id as JsonRpcId)),
    )
    if (listIds.size > 0) {
      const send = sink.send.bind(sink)
      sink.send = (m) =>
        send(
          isResponse(m) && listIds.has(idKey(m.id as JsonRpcId)) && m.result !== undefined
            ? { ...m, result: this.#o.policy.filterToolsList(m.result, x.principal?.token) }
            : m,
        )
    }
    this.#o.metrics.streams.inc()
    const started = performance.now()
    const ended = new Promise<void>((resolve) => {
      sink.onDone = resolve
      res.on('close', resolve)
    })
    session.expect(sink, requests)
    await session.write(x.messages)
    await ended
    this.#o.metrics.streams.dec()
    this.#o.metrics.upstreamLatency.observe((performance.now() - started) / 1000)
    // An SSE stream can be resumed, so its requests go on (their timeout still applies); a JSON one cannot.
    if (sink.open && sink.stream === undefined) session.cancel(sink)
  }

  async get(x: McpExchange): Promise<void> {
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

  #spawn(owner: string | undefined): StdioSession {
    const session = new StdioSession(this.#o)
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
