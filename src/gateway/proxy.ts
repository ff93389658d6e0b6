import {
  type ClientRequest,
  request as httpRequest,
  type IncomingMessage,
  type RequestOptions,
} from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Writable } from 'node:stream'
import { urlToHttpOptions } from 'node:url'
import type { Logger } from 'pino'
import { answerActionRequired, initializeDeclaresUrlElicitation } from './action_required.ts'
import { type CredentialMode, UserActionRequired } from './credentials/index.ts'
import { GatewayError, type GatewayErrorCode } from './errors.ts'
import {
  arrived,
  BodyTooLarge,
  bufferedBody,
  mediaType,
  readBody,
  sendError,
  sendJson,
  singleId,
} from './http.ts'
import {
  isJsonRpcMessage,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  rpcError,
} from './jsonrpc.ts'
import type { GatewayMetrics } from './metrics.ts'
import { isDiscoveryOnly, type ToolPolicy } from './policy.ts'
import type { SessionBindings } from './sessions.ts'
import { formatSseEvent, relayEvents } from './sse.ts'
import {
  forwardedRequestHeaders,
  forwardedResponseHeaders,
  type HeaderMap,
  LAST_WORD_MS,
  type McpExchange,
  type Upstream,
  waitUntil,
} from './upstream.ts'

export interface HttpUpstreamOptions {
  url: URL
  /** How the upstream learns who is calling. */
  credentials: CredentialMode
  policy: ToolPolicy
  sessions: SessionBindings
  metrics: GatewayMetrics
  logger: Logger
  timeoutMs: number
  maxBodyBytes: number
  /** A GET stream that carries nothing for this long is closed, so a lingering one cannot keep a session. */
  streamIdleTimeoutMs: number | undefined
}

/** How long `/readyz` waits for the upstream's answer. */
const READY_TIMEOUT_MS = 2000
/**
 * A body of known length up to this is read whole and sent with its headers in one write; a longer one, or
 * one of unknown length, streams. Reading whole holds no more than the socket buffers a stream fills anyway.
 */
const WHOLE_BODY_BYTES = 65_536

/** The `gatehouse_upstream_errors_total` kind of each upstream failure, as dashboards know them. */
const METRIC_KIND: Partial<Record<GatewayErrorCode, string>> = {
  upstream_timeout: 'timeout',
  upstream_unreachable: 'unreachable',
  upstream_garbage: 'garbage',
  upstream_too_large: 'too_large',
  upstream_refused: 'upstream_refused',
  upstream_stream_failed: 'stream',
}

/**
 * One request through the proxy, so that the gateway can end it itself (an idle stream, shutdown) and still
 * answer the client: with the reason it ended it, instead of the upstream failure its abort causes.
 */
class ProxyCall {
  readonly exchange: McpExchange
  request: ClientRequest | undefined
  /** Why the gateway ended the call: an error the client is told, or `idle` for a stream that just ends. */
  endedBy: GatewayError | 'idle' | undefined
  /** Whether the client's answer is an SSE stream (its headers sent), which can still carry error events. */
  eventStream = false
  /** On an event stream, the ids of the POST's requests whose answer has not gone to the client yet. */
  unanswered: Set<JsonRpcId> | undefined
  /** `limits.upstream_timeout_ms` between two signs of life of the upstream: headers, then each chunk. */
  deadline: NodeJS.Timeout | undefined
  timedOut: GatewayError | undefined

  constructor(exchange: McpExchange) {
    this.exchange = exchange
  }

  /**
   * From now on the client's answer is an event stream, which reports each request left without an answer
   * (a GET stream answers none: it holds no set for as long as it lasts).
   */
  streams(): void {
    this.eventStream = true
    for (const m of this.exchange.messages) {
      if (!isRequest(m)) continue
      this.unanswered ??= new Set()
      this.unanswered.add(m.id as JsonRpcId)
    }
  }

  end(reason: GatewayError | 'idle'): void {
    this.endedBy ??= reason
    this.request?.destroy()
  }

  timeOut(error: GatewayError): void {
    this.timedOut ??= error
    this.request?.destroy(error)
  }
}

/**
 * The Streamable HTTP reverse proxy. Responses stream through as they arrive (piped, so a slow client
 * slows the upstream read, never the gateway's memory); only small bodies of known length, and JSON answers
 * to `tools/list` (bounded, to filter them), are read whole. SSE events are read one by one: each must be
 * JSON-RPC, and the answers are counted, so that a stream that fails or is ended at shutdown still gets an
 * error for each request left without an answer. A client that goes away aborts the upstream request.
 */
export class HttpUpstream implements Upstream {
  readonly #options: HttpUpstreamOptions
  readonly #calls = new Set<ProxyCall>()
  readonly #streams = new Map<string, number>()
  /**
   * The upstream URL as request options, converted once instead of on every request, and only the fields a
   * request needs: Node copies its options twice per request.
   */
  readonly #target: RequestOptions

  constructor(options: HttpUpstreamOptions) {
    this.#options = options
    const { protocol, hostname, port, path, auth } = urlToHttpOptions(options.url)
    this.#target = { protocol, hostname, port, path, ...(auth === undefined ? {} : { auth }) }
  }

  post(exchange: McpExchange): Promise<void> {
    return this.#forward(exchange)
  }

  get(exchange: McpExchange): Promise<void> {
    return this.#forward(exchange)
  }

  async delete(exchange: McpExchange): Promise<void> {
    await this.#forward(exchange)
    if (exchange.sessionId !== undefined && exchange.res.statusCode < 300)
      await this.#forget(exchange.sessionId)
  }

  busy(sessionId: string): boolean {
    return (this.#streams.get(sessionId) ?? 0) > 0
  }

  endSession(): void {
    // The upstream keeps its own session state; forgetting the binding is enough to refuse the id.
  }

  /** Any HTTP answer will do (an MCP endpoint may well refuse OPTIONS): the upstream is up and reachable. */
  ready(): Promise<boolean> {
    return new Promise((resolve) => {
      const send = this.#options.url.protocol === 'https:' ? httpsRequest : httpRequest
      const request = send({ ...this.#target, method: 'OPTIONS', timeout: READY_TIMEOUT_MS })
      request.on('response', (response) => {
        response.resume()
        resolve(true)
        request.destroy()
      })
      request.on('timeout', () => request.destroy())
      request.on('error', () => resolve(false))
      request.on('close', () => resolve(false))
      request.end()
    })
  }

  /**
   * GET streams carry only unsolicited messages and never end by themselves: they end now. The rest get
   * `graceMs` to finish; what is left is answered `shutting_down` (an error event per unanswered request on
   * an SSE stream), never cut off.
   */
  async close(graceMs: number): Promise<void> {
    const stopped = (detail: string) => new GatewayError('shutting_down', { detail })
    for (const call of this.#calls)
      if (call.exchange.req.method === 'GET') call.end(stopped('GET streams end at shutdown'))
    await waitUntil(() => this.#calls.size === 0, graceMs)
    const late = stopped(`still running after limits.shutdown_grace_ms (${graceMs} ms)`)
    for (const call of this.#calls) call.end(late)
    await waitUntil(() => this.#calls.size === 0, LAST_WORD_MS)
  }

  /** The frame of a call awaits its stream for as long as it lasts: it holds the call, not how it was sent. */
  async #forward(exchange: McpExchange): Promise<void> {
    const { res } = exchange
    const call = new ProxyCall(exchange)
    this.#calls.add(call)
    const onClientClose = () => {
      if (!res.writableFinished) call.request?.destroy()
    }
    res.on('close', onClientClose)
    try {
      const response = await this.#answer(call)
      const relaying = response === undefined ? undefined : this.#relay(call, response)
      if (relaying !== undefined) await relaying
    } catch (error) {
      if (res.destroyed) return
      this.#lastWord(call, this.#failure(call, error))
    } finally {
      clearTimeout(call.deadline)
      res.off('close', onClientClose)
      this.#calls.delete(call)
      if (call.eventStream) this.#streamEnded(call)
    }
  }

  /**
   * The upstream's answer to the call, the session it opened bound; `undefined` when the gateway answered
   * the request itself.
   */
  async #answer(call: ProxyCall): Promise<IncomingMessage | undefined> {
    const { exchange } = call
    const started = performance.now()
    // Awaited only when a promise: most modes know their headers at once, and most answers bind nothing.
    const pending = this.#requestHeaders(exchange)
    const headers = pending instanceof Promise ? await pending : pending
    if (headers === undefined) return undefined
    if (call.endedBy !== undefined) throw call.endedBy
    const response = await this.#send(call, exchange.req.method ?? 'GET', headers, exchange.body)
    this.#options.metrics.upstreamLatency.observe((performance.now() - started) / 1000)
    const learning = this.#learnSession(exchange, response)
    if (learning !== undefined) await learning
    return response
  }

  /** What the client is told about a call that failed: why the gateway ended it, or the upstream failure (logged). */
  #failure(call: ProxyCall, error: unknown): GatewayError | undefined {
    if (call.endedBy !== undefined) return call.endedBy === 'idle' ? undefined : call.endedBy
    const failure =
      call.timedOut ??
      (error instanceof GatewayError
        ? error
        : new GatewayError('upstream_stream_failed', { detail: (error as Error).message }))
    const kind = METRIC_KIND[failure.code] ?? failure.code
    this.#options.metrics.upstreamErrors.inc({ kind })
    this.#options.logger.warn({ kind, detail: failure.detail }, 'upstream request failed')
    return failure
  }

  /**
   * Answers a call that failed, whatever was sent of it: an error response if nothing was; on an SSE stream,
   * an error event for each request without an answer, then the end of the stream. Only a body that is not
   * a stream is cut off, as a truncated body must look truncated.
   */
  #lastWord(call: ProxyCall, failure: GatewayError | undefined): void {
    const { res } = call.exchange
    if (!res.headersSent) {
      if (failure) sendError(res, failure, singleId(call.exchange.messages))
      else res.end()
      return
    }
    if (res.writableEnded) return
    if (!call.eventStream) {
      res.destroy()
      return
    }
    if (failure)
      for (const id of call.unanswered ?? []) {
        const data = JSON.stringify(rpcError(id, failure.rpcCode, failure.publicText))
        res.write(formatSseEvent({ event: 'message', data }))
      }
    res.end()
  }

  /** The upstream request's headers; undefined when the gateway answered the request itself. */
  #requestHeaders(exchange: McpExchange): HeaderMap | undefined | Promise<HeaderMap | undefined> {
    const headers = forwardedRequestHeaders(exchange.req.headers)
    // Only a session id the gateway checked against its owner goes on (none in the stateless era).
    if (exchange.sessionId !== undefined) headers['mcp-session-id'] = exchange.sessionId
    if (exchange.body.length > 0) headers['content-length'] = String(exchange.body.length)
    if (exchange.principal === undefined) return headers
    let credentials: ReturnType<CredentialMode['headers']>
    try {
      credentials = this.#options.credentials.headers(exchange.principal)
    } catch (error) {
      return this.#withoutCredentials(exchange, headers, error)
    }
    if (!(credentials instanceof Promise)) return Object.assign(headers, credentials)
    return credentials.then(
      (known) => Object.assign(headers, known),
      (error: unknown) => this.#withoutCredentials(exchange, headers, error),
    )
  }

  /**
   * A request whose credentials need the user to act first: discovery and the streams go on without them,
   * so a client can set up its session and list the tools; anything else is answered here (undefined), and
   * the upstream sees nothing of it.
   */
  #withoutCredentials(exchange: McpExchange, headers: HeaderMap, error: unknown): HeaderMap | undefined {
    if (!(error instanceof UserActionRequired)) throw error
    if (exchange.req.method !== 'POST' || isDiscoveryOnly(exchange.messages)) return headers
    const declared =
      exchange.sessionId !== undefined && this.#options.sessions.urlElicitation(exchange.sessionId)
    answerActionRequired(exchange, error, declared)
    return undefined
  }

  /**
   * Sends the request and resolves with the upstream's answer. Its listeners live as long as the request (a
   * stream's whole life): they hold the call, never the headers or the body.
   */
  #send(call: ProxyCall, method: string, headers: HeaderMap, body: Buffer): Promise<IncomingMessage> {
    const { url, timeoutMs } = this.#options
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    const request = send({ ...this.#target, method, headers: headerList(url.host, headers) })
    call.request = request
    call.deadline = setTimeout(() => {
      const detail = `nothing from the upstream for ${timeoutMs} ms`
      call.timeOut(new GatewayError('upstream_timeout', { detail }))
    }, timeoutMs)
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      request.on('response', resolve)
      request.on('error', (error) => {
        reject(
          error instanceof GatewayError
            ? error
            : new GatewayError('upstream_unreachable', {
                detail: `${url.origin}: ${(error as NodeJS.ErrnoException).code ?? error.message}`,
              }),
        )
      })
    })
    request.end(body.length > 0 ? body : undefined)
    return answered
  }

  /**
   * Binds the session the upstream creates on `initialize` to the caller, before the client learns its id
   * (its next request may reach another instance); forgets one the upstream ended. `undefined` when there
   * is nothing to learn (most answers).
   */
  #learnSession(exchange: McpExchange, response: IncomingMessage): Promise<void> | undefined {
    const created = response.headers['mcp-session-id']
    if (
      response.statusCode === 200 &&
      typeof created === 'string' &&
      exchange.messages.some((m) => m.method === 'initialize')
    ) {
      return this.#bind(created, exchange, response)
    }
    if (response.statusCode === 404 && exchange.sessionId !== undefined)
      return this.#forget(exchange.sessionId)
    return undefined
  }

  async #bind(id: string, exchange: McpExchange, response: IncomingMessage): Promise<void> {
    try {
      await this.#options.sessions.bind(
        id,
        exchange.principal?.key,
        initializeDeclaresUrlElicitation(exchange.messages),
      )
    } catch (error) {
      response.resume()
      throw error
    }
  }

  /** A session the upstream ended: a failure to forget it leaves its binding to expire when idle. */
  async #forget(sessionId: string): Promise<void> {
    try {
      await this.#options.sessions.delete(sessionId)
    } catch {
      // Logged where it failed (shared state unreachable); the upstream refuses the id anyway.
    }
  }

  /**
   * Relays the answer; a promise while it is under way. Not an async function: a stream's promise is handed
   * back as it is, rather than adopted by another one that would last as long.
   */
  #relay(call: ProxyCall, response: IncomingMessage): Promise<void> | undefined {
    const { exchange } = call
    const { res } = exchange
    const status = response.statusCode ?? 502
    if (status === 401 || status === 403) {
      response.resume()
      // The client authenticated to the gateway; an upstream refusal is the operator's to fix, not the client's.
      throw new GatewayError('upstream_refused', {
        detail: `the upstream answered ${status} to an authorized request`,
      })
    }
    const headers = forwardedResponseHeaders(response.headers, res)
    const type = mediaType(response.headers['content-type'])
    const streaming = type === 'text/event-stream'
    const post = exchange.req.method === 'POST'
    // A GET stream may be quiet for long: `limits.stream_idle_timeout_ms` is its deadline, if any. An answer
    // that has all arrived already has nothing more to wait for.
    if ((streaming && !post) || arrived(response)) {
      clearTimeout(call.deadline)
      call.deadline = undefined
    } else response.on('data', () => call.deadline?.refresh())
    const listIds = toolsListIds(exchange.messages)
    // Only a JSON answer the tool policy may have to filter is read whole; the rest goes on as it comes.
    if (type === 'application/json' && post && listIds !== undefined)
      return this.#relayToolsList(call, response, headers, listIds)
    if (post && status === 200 && !streaming && type !== 'application/json') {
      response.resume()
      throw new GatewayError('upstream_garbage', {
        detail: `the upstream answered a POST with content-type ${JSON.stringify(response.headers['content-type'])}`,
      })
    }
    // Relayed unchanged, a body keeps its length; SSE events may be rewritten.
    const length = streaming ? undefined : response.headers['content-length']
    if (length !== undefined) {
      headers['content-length'] = length
      if (Number(length) <= WHOLE_BODY_BYTES) {
        const read = this.#readAnswer(response, WHOLE_BODY_BYTES)
        if (!(read instanceof Promise)) {
          res.writeHead(status, headers).end(read)
          return undefined
        }
        return read.then((body) => void res.writeHead(status, headers).end(body))
      }
    }
    res.writeHead(status, headers)
    if (!streaming) return relay(response, res)
    // A stream's headers go now: its first event may be long in coming.
    res.flushHeaders()
    const idleMs = this.#options.streamIdleTimeoutMs
    // No heartbeat: the gateway keeping a stream busy would keep its session from ever being reaped.
    // Its deadline is the upstream socket's own timeout, which each chunk read renews: no timer of ours.
    if (exchange.req.method === 'GET' && idleMs !== undefined)
      call.request?.setTimeout(idleMs, () => call.end('idle'))
    call.streams()
    this.#options.metrics.streams.inc()
    const sessionId = exchange.sessionId
    if (sessionId !== undefined) this.#streams.set(sessionId, (this.#streams.get(sessionId) ?? 0) + 1)
    return relayEvents(
      response,
      res,
      (data) => this.#rewriteEvent(data, listIds, call),
      this.#options.maxBodyBytes,
    )
  }

  /** The end of a call whose answer was an event stream, however it ended. */
  #streamEnded(call: ProxyCall): void {
    this.#options.metrics.streams.dec()
    const sessionId = call.exchange.sessionId
    if (sessionId !== undefined) this.#streams.set(sessionId, (this.#streams.get(sessionId) ?? 1) - 1)
  }

  /** A JSON answer to `tools/list`, read whole to filter it by the tool policy. */
  async #relayToolsList(
    call: ProxyCall,
    response: IncomingMessage,
    headers: HeaderMap,
    listIds: ReadonlySet<JsonRpcId>,
  ): Promise<void> {
    const { exchange } = call
    const { res } = exchange
    const status = response.statusCode ?? 502
    const body = await this.#readAnswer(response, this.#options.maxBodyBytes)
    let parsed: unknown
    try {
      parsed = JSON.parse(body.toString('utf8'))
    } catch {
      throw new GatewayError('upstream_garbage', { detail: 'the upstream answered invalid JSON' })
    }
    const filtered = this.#filter(parsed, listIds, exchange)
    if (filtered !== parsed) sendJson(res, status, filtered, headers)
    else res.writeHead(status, { ...headers, 'content-length': String(body.length) }).end(body)
  }

  /** The whole body of an answer, within `limit` bytes: at once when it has all arrived. */
  #readAnswer(response: IncomingMessage, limit: number): Buffer | Promise<Buffer> {
    return bufferedBody(response, limit) ?? this.#readArriving(response, limit)
  }

  #readArriving(response: IncomingMessage, limit: number): Promise<Buffer> {
    return readBody(response, limit).catch((error: unknown) => {
      // No answer is owed to the upstream: the rest of an oversized body is not worth draining.
      response.destroy()
      if (!(error instanceof BodyTooLarge)) throw error
      throw new GatewayError('upstream_too_large', { detail: `a response above ${limit} bytes` })
    })
  }

  /** Checks that an event is JSON-RPC, notes the answers it carries, and filters `tools/list` results. */
  #rewriteEvent(data: string, listIds: ReadonlySet<JsonRpcId> | undefined, call: ProxyCall): string {
    let message: unknown
    try {
      message = JSON.parse(data)
    } catch {
      message = undefined
    }
    const messages = Array.isArray(message) ? message : [message]
    if (messages.length === 0 || !messages.every(isJsonRpcMessage))
      throw new GatewayError('upstream_garbage', {
        detail: `an event of the upstream's stream is not JSON-RPC: ${JSON.stringify(data.slice(0, 100))}`,
      })
    for (const m of messages) if (isResponse(m)) call.unanswered?.delete(m.id as JsonRpcId)
    const filtered = this.#filter(message, listIds, call.exchange)
    return filtered === message ? data : JSON.stringify(filtered)
  }

  /** The message with its `tools/list` results filtered; the same value when nothing had to change. */
  #filter(message: unknown, listIds: ReadonlySet<JsonRpcId> | undefined, exchange: McpExchange): unknown {
    if (Array.isArray(message)) {
      const filtered = message.map((m) => this.#filter(m, listIds, exchange))
      return filtered.every((m, i) => m === message[i]) ? message : filtered
    }
    const m = message as JsonRpcMessage
    if (listIds === undefined || typeof m !== 'object' || m === null || !listIds.has(m.id as JsonRpcId))
      return message
    if (m.result === undefined) return message
    const result = this.#options.policy.filterToolsList(m.result, exchange.principal?.token)
    return result === m.result ? message : { ...m, result }
  }
}

/**
 * The request's headers, `Host` first, as the flat list Node's client writes straight into the request head:
 * given an object, it keeps a copy of every header for the request's whole life (an SSE stream's included).
 */
function headerList(host: string, headers: HeaderMap): string[] {
  const list = ['host', host]
  for (const name in headers) {
    const value = headers[name] as string | string[]
    if (typeof value === 'string') list.push(name, value)
    else for (const item of value) list.push(name, item)
  }
  return list
}

/** The ids of the `tools/list` requests among `messages`, whose answers the tool policy filters; none: `undefined`. */
function toolsListIds(messages: readonly JsonRpcMessage[]): ReadonlySet<JsonRpcId> | undefined {
  let ids: Set<JsonRpcId> | undefined
  for (const m of messages) {
    if (m.method !== 'tools/list' || !isRequest(m)) continue
    ids ??= new Set()
    ids.add(m.id as JsonRpcId)
  }
  return ids
}

/**
 * `from` piped into `to`, settled once `to` has finished, or with the first failure of either (either
 * closing early included); `from` is then destroyed. What `stream.pipeline` does for two streams, without
 * the AbortController and DOMException it makes on every call, which cost more than a small answer's relay.
 */
function relay(from: IncomingMessage, to: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error?: Error) => {
      from.off('error', settle).off('close', onFromClose)
      to.off('error', settle).off('close', onToClose).off('finish', onFinish)
      if (error === undefined) return resolve()
      from.unpipe(to)
      from.destroy()
      reject(error)
    }
    const onFinish = () => settle()
    const onFromClose = () => {
      if (!from.readableEnded) settle(new Error('the upstream answer ended early'))
    }
    const onToClose = () => {
      if (!to.writableFinished) settle(new Error('the client went away'))
    }
    from.on('error', settle).on('close', onFromClose)
    to.on('error', settle).on('close', onToClose).on('finish', onFinish)
    from.pipe(to)
  })
}
