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

/** Server-to-client messages kept for a GET stream that is not open yet. */
const MAX_QUEUED = 100

const idKey = (id: JsonRpcId): string => `${typeof id}:${id}`

/** The responses one POST waits for, and where they go: an SSE stream or one JSON body. */
class PostSink {
  readonly #pending: Set<string>
  readonly #collected: JsonRpcMessage[] = []
  readonly #res: ServerResponse
  readonly #batch: boolean
  readonly sse: boolean
  readonly sessionHeader: Record<string, string>
  onDone: () => void = () => {}

  constructor(
    res: ServerResponse,
    ids: JsonRpcId[],
    sse: boolean,
    batch: boolean,
    sessionHeader: Record<string, string>,
  ) {
    this.#res = res
    this.#pending = new Set(ids.map(idKey))
    this.sse = sse
    this.#batch = batch
    this.sessionHeader = sessionHeader
    if (sse) {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        ...sessionHeader,
      })
      res.flushHeaders()
    }
  }

  get open(): boolean {
    return this.#pending.size > 0 && !this.#res.destroyed
  }

  /** Writes a message; returns false when the client is slow and the child should wait. */
  send(message: JsonRpcMessage): boolean {
    const done = isResponse(message) && this.#pending.delete(idKey(message.id as JsonRpcId))
    let flowing = true
    if (this.sse)
      flowing = this.#res.write(formatSseEvent({ event: 'message', data: JSON.stringify(message) }))
    else if (done) this.#collected.push(message)
    if (done && this.#pending.size === 0) this.#finish()
    return flowing
  }

  #finish(): void {
    if (this.sse) this.#res.end()
    else sendJson(this.#res, 200, this.#batch ? this.#collected : this.#collected[0], this.sessionHeader)
    this.onDone()
  }

  drained(): Promise<void> {
    return new Promise((resolve) => this.#res.once('drain', resolve))
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
  readonly #queue: JsonRpcMessage[] = []
  readonly #o: StdioUpstreamOptions
  readonly #log: Logger
  #getStream: ServerResponse | undefined
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
    return this.pending.size > 0 || this.#getStream !== undefined
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

  openGetStream(res: ServerResponse): boolean {
    if (this.#getStream !== undefined && !this.#getStream.destroyed) return false
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.flushHeaders()
    this.#getStream = res
    this.#o.metrics.streams.inc()
    res.on('close', () => {
      this.#o.metrics.streams.dec()
      if (this.#getStream === res) this.#getStream = undefined
    })
    for (const message of this.#queue.splice(0)) this.#writeGet(message)
    return true
  }

  /** The client went away before its answers: tell the server to stop working on them. */
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
    if (!sink.send(message) && !this.child.stdout.isPaused()) {
      this.child.stdout.pause()
      void sink.drained().then(() => this.child.stdout.resume())
    }
  }

  /** Messages not tied to a request go to the GET stream, or to an open POST stream, or wait. */
  #toClient(message: JsonRpcMessage): void {
    if (this.#getStream !== undefined) {
      this.#writeGet(message)
      return
    }
    const sink = [...this.pending.values()].map((p) => p.sink).find((s) => s.sse && s.open)
    if (sink !== undefined) this.#deliver(sink, message)
    else if (this.#queue.length < MAX_QUEUED) this.#queue.push(message)
  }

  #writeGet(message: JsonRpcMessage): void {
    this.#getStream?.write(formatSseEvent({ event: 'message', data: JSON.stringify(message) }))
  }

  #onExit(reason: string): void {
    if (this.exited) return
    this.exited = true
    this.#log.warn({ reason }, 'MCP server process ended')
    for (const key of [...this.pending.keys()]) {
      const p = this.#settle(key)
      p?.sink.send(rpcError(p.id, RPC.connectionClosed, `the MCP server process ${reason}`))
    }
    this.#getStream?.end()
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
      sse,
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
    if (sink.open) session.cancel(sink)
  }

  async get(x: McpExchange): Promise<void> {
    const session = x.sessionId === undefined ? undefined : this.#sessions.get(x.sessionId)
    if (session === undefined) {
      sendRpcError(x.res, x.sessionId === undefined ? 400 : 404, RPC.connectionClosed, 'Session not found')
      return
    }
    if (!session.openGetStream(x.res)) {
      sendRpcError(x.res, 409, RPC.connectionClosed, 'Conflict: this session already has a GET stream')
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
