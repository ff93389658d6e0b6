import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { delimiter, isAbsolute, join, resolve, sep } from 'node:path'
import type { Logger } from 'pino'
import { childEnvironment } from '../child_env.ts'
import {
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  RPC,
  rpcError,
} from '../jsonrpc.ts'
import type { GatewayMetrics } from '../metrics.ts'
import { keepRaw, rawValue, replaceValue, textOf } from './raw.ts'
import type { BridgeSession } from './session.ts'
import { InternalReceiver, idKey, PostSink, type Receiver } from './sinks.ts'

/** What a child process needs of the bridge's options. */
export interface ChildOptions {
  command: string
  args: readonly string[]
  env: Readonly<Record<string, string>>
  cwd: string | undefined
  /** One child for every session and subject: its own messages cannot be attributed to one of them. */
  shared: boolean
  metrics: GatewayMetrics
  logger: Logger
  timeoutMs: number
  /** Longest line a child may write before it is treated as broken. */
  maxMessageBytes: number
}

/**
 * Whether the command can be started: an executable file, at its path (from `cwd`) or found on the PATH the
 * child is given, as `spawn` looks it up.
 */
export async function commandRunnable(options: ChildOptions): Promise<boolean> {
  const { command, cwd } = options
  const candidates =
    command.includes('/') || command.includes(sep)
      ? [isAbsolute(command) ? command : resolve(cwd ?? process.cwd(), command)]
      : (childEnvironment(process.env, options.env).PATH ?? '')
          .split(delimiter)
          .filter((dir) => dir !== '')
          .map((dir) => join(dir, command))
  for (const path of candidates) {
    try {
      await access(path, constants.X_OK)
      if ((await stat(path)).isFile()) return true
    } catch {}
  }
  return false
}

/**
 * Children run in a process group of their own (POSIX): a signal to the gateway's group (Ctrl-C in a shell,
 * `npm`/`docker stop` passing SIGTERM on) must not stop them before the gateway has drained their requests.
 * The gateway signals the whole group, so the processes a command starts (`npx` starts node) stop with it.
 */
const OWN_GROUP = process.platform !== 'win32'

/** Children still running, stopped with the gateway however it exits (a crash included). */
const running = new Set<StdioChild>()
let reaperInstalled = false

function reapOnExit(child: StdioChild): void {
  running.add(child)
  if (reaperInstalled) return
  reaperInstalled = true
  process.once('exit', () => {
    for (const left of running) left.signal('SIGKILL')
  })
}

/** One newline-delimited message for a child: the client's bytes where it wrote them (see raw.ts). */
const frame = (message: JsonRpcMessage): string => `${textOf(message)}\n`

/**
 * A request in flight at the child. The child sees ids and progress tokens the bridge numbers itself, so
 * requests of clients that share a child (the sessions of a shared child, one subject's stateless requests)
 * never collide; the client's own values come back on the answers.
 */
interface Pending {
  childId: number
  clientId: JsonRpcId
  /** The client's id and progress token as it wrote them, for the answer (`undefined`: serialized). */
  clientIdText: string | undefined
  clientTokenText: string | undefined
  /** The session that asked; `undefined` for the bridge's own requests. */
  session: BridgeSession | undefined
  sink: Receiver
  timer: NodeJS.Timeout
  clientToken: unknown
  childToken: number | undefined
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
 * One child process and what is in flight at it, for its sessions: one legacy MCP session, every session of
 * a shared child, or one subject's stateless requests.
 */
export class StdioChild {
  readonly process: ChildProcessWithoutNullStreams
  readonly sessions = new Set<BridgeSession>()
  /** Requests in flight, by the id the child sees. */
  readonly #byChildId = new Map<string, Pending>()
  /** The same, by session and client id (several when a stateless subject reuses an id), so no lookup scans all. */
  readonly #bySession = new Map<BridgeSession | undefined, Map<string, Set<Pending>>>()
  readonly #byChildToken = new Map<number, Pending>()
  /** Requests the child sent to a session: only that session may answer them. */
  readonly #childRequests = new Map<string, BridgeSession>()
  readonly #options: ChildOptions
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

  constructor(options: ChildOptions) {
    this.#options = options
    this.process = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: childEnvironment(process.env, options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: OWN_GROUP,
    })
    reapOnExit(this)
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

  /** Whether any request is in flight at the child. */
  get busy(): boolean {
    return this.#byChildId.size > 0
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
      for (const pending of [...(mine?.get(key) ?? [])]) {
        if (pending.sink !== sink) continue
        this.#settle(idKey(pending.childId))
        void this.#cancelUpstream(pending.childId, 'client disconnected')
      }
    }
  }

  /** The session ended while the child goes on: its requests are cancelled there and answered with an error. */
  detach(session: BridgeSession): void {
    this.sessions.delete(session)
    for (const pending of this.#pendingOf(session)) {
      this.#settle(idKey(pending.childId))
      pending.sink.send(rpcError(pending.clientId, RPC.connectionClosed, 'the MCP session ended'))
      void this.#cancelUpstream(pending.childId, 'session ended')
    }
    for (const [key, owner] of this.#childRequests) if (owner === session) this.#childRequests.delete(key)
    session.standalone.finish()
    session.listens.endAll()
  }

  /** Answers every request in flight with this error (the gateway stops), and cancels it at the child. */
  failPending(code: number, message: string): void {
    for (const key of [...this.#byChildId.keys()]) {
      const pending = this.#settle(key)
      if (pending === undefined) continue
      pending.sink.send(rpcError(pending.clientId, code, message))
      void this.#cancelUpstream(pending.childId, message)
    }
  }

  /** Stops the child: SIGTERM, and SIGKILL if it is still there after `graceMs`. */
  stop(graceMs: number): Promise<void> {
    if (this.exited) return Promise.resolve()
    return new Promise((resolve) => {
      const kill = setTimeout(() => this.signal('SIGKILL'), graceMs)
      this.process.once('exit', () => {
        clearTimeout(kill)
        resolve()
      })
      this.process.stdin.end()
      this.signal('SIGTERM')
    })
  }

  /** Signals the child's process group (the child alone where it has none). */
  signal(signal: NodeJS.Signals): void {
    const { pid } = this.process
    if (!OWN_GROUP || pid === undefined) {
      this.process.kill(signal)
      return
    }
    try {
      process.kill(-pid, signal)
    } catch {
      // The group is gone already.
    }
  }

  #track(session: BridgeSession | undefined, sink: Receiver, request: JsonRpcMessage): JsonRpcMessage {
    this.#nextChildId += 1
    const childId = this.#nextChildId
    const meta = request.params?._meta as Record<string, unknown> | undefined
    const clientToken = meta?.progressToken
    const pending: Pending = {
      childId,
      clientId: request.id as JsonRpcId,
      clientIdText: rawValue(request, ['id']),
      clientTokenText: rawValue(request, ['params', '_meta', 'progressToken']),
      session,
      sink,
      timer: this.#timeout(childId),
      clientToken,
      childToken: clientToken === undefined ? undefined : childId,
    }
    this.#byChildId.set(idKey(childId), pending)
    let mine = this.#bySession.get(session)
    if (mine === undefined) {
      mine = new Map()
      this.#bySession.set(session, mine)
    }
    const same = mine.get(idKey(pending.clientId))
    if (same === undefined) mine.set(idKey(pending.clientId), new Set([pending]))
    else same.add(pending)
    const renumbered = replaceValue(request, { ...request, id: childId }, ['id'], childId)
    if (pending.childToken === undefined) return renumbered
    this.#byChildToken.set(pending.childToken, pending)
    const next = {
      ...renumbered,
      params: { ...request.params, _meta: { ...meta, progressToken: pending.childToken } },
    }
    return replaceValue(renumbered, next, ['params', '_meta', 'progressToken'], pending.childToken)
  }

  /** The client cancelled one of its session's requests: stop waiting, and pass it on under the child's id. */
  #cancelledByClient(
    session: BridgeSession | undefined,
    message: JsonRpcMessage,
  ): JsonRpcMessage | undefined {
    const requestId = message.params?.requestId
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return undefined
    const [pending] = this.#bySession.get(session)?.get(idKey(requestId)) ?? []
    if (pending === undefined) return undefined
    this.#settle(idKey(pending.childId))
    pending.sink.drop(idKey(pending.clientId))
    const next = { ...message, params: { ...message.params, requestId: pending.childId } }
    return replaceValue(message, next, ['params', 'requestId'], pending.childId)
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
      const pending = this.#settle(idKey(childId))
      if (pending === undefined) return
      this.#options.metrics.upstreamErrors.inc({ kind: 'timeout' })
      this.#log.warn({ id: pending.clientId }, 'the MCP server did not answer in time')
      pending.sink.send(
        rpcError(
          pending.clientId,
          RPC.requestTimeout,
          `the MCP server did not answer within ${this.#options.timeoutMs} ms`,
        ),
      )
      void this.#cancelUpstream(childId, 'timeout')
    }, this.#options.timeoutMs)
  }

  #cancelUpstream(requestId: JsonRpcId, reason: string): Promise<void> {
    return this.#write([{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason } }])
  }

  #settle(key: string): Pending | undefined {
    const pending = this.#byChildId.get(key)
    if (pending === undefined) return undefined
    clearTimeout(pending.timer)
    this.#byChildId.delete(key)
    if (pending.childToken !== undefined) this.#byChildToken.delete(pending.childToken)
    const mine = this.#bySession.get(pending.session)
    const same = mine?.get(idKey(pending.clientId))
    same?.delete(pending)
    if (same?.size === 0) mine?.delete(idKey(pending.clientId))
    if (mine?.size === 0) this.#bySession.delete(pending.session)
    return pending
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
    if (this.#stdoutBuffer.length > this.#options.maxMessageBytes) {
      this.#log.warn(
        { bytes: this.#stdoutBuffer.length },
        'the MCP server wrote an over-long line; stopping it',
      )
      this.signal('SIGKILL')
    }
  }

  #onLine(line: string): void {
    let message: JsonRpcMessage
    try {
      message = JSON.parse(line)
      // `null` or a bare number is JSON too, and reading a field of it would throw in this handler.
      if (typeof message !== 'object' || message === null) throw new TypeError('not an object')
    } catch {
      this.#options.metrics.upstreamErrors.inc({ kind: 'garbage' })
      this.#log.warn({ line: line.slice(0, 200) }, 'the MCP server wrote a line that is not JSON; ignored')
      return
    }
    keepRaw(message, line)
    if (isResponse(message)) {
      const pending = this.#settle(idKey(message.id as JsonRpcId))
      if (pending !== undefined)
        this.#deliver(
          pending.sink,
          replaceValue(
            message,
            { ...message, id: pending.clientId },
            ['id'],
            pending.clientId,
            pending.clientIdText,
          ),
        )
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
    const pending = typeof childToken === 'number' ? this.#byChildToken.get(childToken) : undefined
    if (!pending?.sink.open) {
      this.#unattributed(message)
      return
    }
    // Progress shows the server is alive: the request's timeout starts again, as the MCP SDK does.
    pending.timer.refresh()
    const path = ['params', 'progressToken']
    const next = { ...message, params: { ...message.params, progressToken: pending.clientToken } }
    this.#deliver(
      pending.sink,
      replaceValue(message, next, path, pending.clientToken, pending.clientTokenText),
    )
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
   * every listening session and every listen stream that asked for it; a resource update goes to the listen
   * streams of a child of its own that named the URI. The rest of a shared child's (logging, resource updates, sampling, elicitation,
   * roots, pings) could be any user's, whatever is in flight when it comes: it goes nowhere.
   */
  #toClient(message: JsonRpcMessage): void {
    const method = message.method as string
    if (isNotification(message) && LIST_CHANGED.has(method)) {
      // Without the child's params: the news is the method, and nothing else goes to everyone.
      const news: JsonRpcMessage = { jsonrpc: '2.0', method }
      for (const session of this.sessions) {
        if (session.listening) session.standalone.write(news)
        session.listens.deliver(news)
      }
      return
    }
    const own = this.#ownSession()
    if (method === 'notifications/resources/updated' && own !== undefined && own.listens.size > 0) {
      // Sent for the subscriptions the bridge took for this subject's listen streams (see listen.ts).
      own.listens.deliver(message)
      return
    }
    const session = own?.listening ? own : undefined
    if (session === undefined) {
      this.#unattributed(message)
      return
    }
    if (isRequest(message)) this.#childRequests.set(idKey(message.id as JsonRpcId), session)
    const sink = session.standalone.attached
      ? undefined
      : this.#pendingOf(session)
          .map((pending) => pending.sink)
          .find((s): s is PostSink => s instanceof PostSink && s.stream?.attached === true)
    if (sink !== undefined) this.#deliver(sink, message)
    else this.#pause(session.standalone.write(message), session.standalone)
  }

  /** The session a child's own messages are for: the only one of a child of its own. */
  #ownSession(): BridgeSession | undefined {
    if (this.#options.shared || this.sessions.size !== 1) return undefined
    const [session] = this.sessions
    return session
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
    running.delete(this)
    this.#log.warn({ reason }, 'MCP server process ended')
    for (const key of [...this.#byChildId.keys()]) {
      const pending = this.#settle(key)
      pending?.sink.send(rpcError(pending.clientId, RPC.connectionClosed, `the MCP server process ${reason}`))
    }
    for (const session of this.sessions) {
      session.standalone.finish()
      session.listens.endAll()
    }
    this.onExit()
  }
}

/** The session-era revisions the bridge offers a child it initializes itself, newest first. */
export const LEGACY_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26'] as const

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

/** Initializes a child for its clients, as the bridge; resolves with its `initialize` result. */
export async function initializeChild(child: StdioChild): Promise<Record<string, unknown>> {
  const reply = await child.request('initialize', BRIDGE_INITIALIZE)
  if (reply.error !== undefined || typeof reply.result !== 'object' || reply.result === null)
    throw new Error(`initialize failed: ${reply.error?.message ?? 'no result'}`)
  await child.forward(undefined, undefined, [{ jsonrpc: '2.0', method: 'notifications/initialized' }])
  child.initialized = reply.result as Record<string, unknown>
  return child.initialized
}
