import {
  type ClientRequest,
  request as httpRequest,
  type IncomingMessage,
  type RequestOptions,
} from 'node:http'
import { request as httpsRequest } from 'node:https'
import { pipeline } from 'node:stream/promises'
import { urlToHttpOptions } from 'node:url'
import type { Logger } from 'pino'
import type { CredentialMode } from './credentials/index.ts'
import { GatewayError, type GatewayErrorCode } from './errors.ts'
import { BodyTooLarge, mediaType, readBody, sendError, sendJson, singleId } from './http.ts'
import { isRequest, type JsonRpcId, type JsonRpcMessage } from './jsonrpc.ts'
import type { GatewayMetrics } from './metrics.ts'
import type { ToolPolicy } from './policy.ts'
import type { SessionRegistry } from './sessions.ts'
import { SseRewriter } from './sse.ts'
import {
  FORWARDED_REQUEST_HEADERS,
  FORWARDED_RESPONSE_HEADERS,
  type McpExchange,
  type Upstream,
} from './upstream.ts'

export interface HttpUpstreamOptions {
  url: URL
  /** How the upstream learns who is calling. */
  credentials: CredentialMode
  policy: ToolPolicy
  sessions: SessionRegistry
  metrics: GatewayMetrics
  logger: Logger
  timeoutMs: number
  maxBodyBytes: number
  /** A GET stream that carries nothing for this long is closed, so a lingering one cannot keep a session. */
  streamIdleTimeoutMs: number | undefined
}

/** How long `/readyz` waits for the upstream's answer. */
const READY_TIMEOUT_MS = 2000

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
 * The Streamable HTTP reverse proxy. Responses stream through as they arrive (`pipeline`, so a slow
 * client slows the upstream read, never the gateway's memory); only JSON bodies, which are bounded, are
 * read whole, to validate them and filter `tools/list`. A client that goes away aborts the upstream request.
 */
export class HttpUpstream implements Upstream {
  readonly #o: HttpUpstreamOptions
  readonly #inFlight = new Set<ClientRequest>()
  readonly #streams = new Map<string, number>()
  /** The upstream URL as request options, converted once instead of on every request. */
  readonly #target: RequestOptions

  constructor(options: HttpUpstreamOptions) {
    this.#o = options
    this.#target = urlToHttpOptions(options.url)
  }

  post(x: McpExchange): Promise<void> {
    return this.#forward(x)
  }

  get(x: McpExchange): Promise<void> {
    return this.#forward(x)
  }

  async delete(x: McpExchange): Promise<void> {
    await this.#forward(x)
    if (x.sessionId !== undefined && x.res.statusCode < 300) this.#o.sessions.delete(x.sessionId)
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
      const send = this.#o.url.protocol === 'https:' ? httpsRequest : httpRequest
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

  /** GET streams carry only unsolicited messages and never end by themselves: they close now; the rest drain. */
  async close(graceMs: number): Promise<void> {
    for (const request of this.#inFlight) if (request.method === 'GET') request.destroy()
    const deadline = Date.now() + graceMs
    while (this.#inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    for (const request of this.#inFlight) request.destroy()
  }

  async #forward(x: McpExchange): Promise<void> {
    const { req, res } = x
    const id = singleId(x.messages)
    const started = performance.now()
    let upstreamReq: ClientRequest | undefined
    const onClientClose = () => {
      if (!res.writableFinished) upstreamReq?.destroy()
    }
    res.on('close', onClientClose)
    try {
      const headers = await this.#requestHeaders(x)
      const { request, response } = await this.#send(req.method ?? 'GET', headers, x.body)
      upstreamReq = request
      this.#o.metrics.upstreamLatency.observe((performance.now() - started) / 1000)
      this.#learnSession(x, response)
      await this.#relay(x, response)
    } catch (error) {
      const failure =
        error instanceof GatewayError
          ? error
          : new GatewayError('upstream_stream_failed', { detail: (error as Error).message })
      if (res.destroyed) return
      const kind = METRIC_KIND[failure.code] ?? failure.code
      this.#o.metrics.upstreamErrors.inc({ kind })
      this.#o.logger.warn({ kind, detail: failure.detail }, 'upstream request failed')
      sendError(res, failure, id)
    } finally {
      res.off('close', onClientClose)
    }
  }

  async #requestHeaders(x: McpExchange): Promise<Record<string, string>> {
    const headers: Record<string, string> = {}
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = x.req.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    // Only a session id the gateway checked against its owner goes on (none in the stateless era).
    delete headers['mcp-session-id']
    if (x.sessionId !== undefined) headers['mcp-session-id'] = x.sessionId
    if (x.body.length > 0) headers['content-length'] = String(x.body.length)
    if (x.principal === undefined) return headers
    return Object.assign(headers, await this.#o.credentials.headers(x.principal))
  }

  #send(
    method: string,
    headers: Record<string, string>,
    body: Buffer,
  ): Promise<{ request: ClientRequest; response: IncomingMessage }> {
    const { url, timeoutMs } = this.#o
    return new Promise((resolve, reject) => {
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest
      const request = send({ ...this.#target, method, headers })
      this.#inFlight.add(request)
      request.on('close', () => this.#inFlight.delete(request))
      const timer = setTimeout(() => {
        request.destroy(new GatewayError('upstream_timeout', { detail: `no answer within ${timeoutMs} ms` }))
      }, timeoutMs)
      request.on('response', (response) => {
        clearTimeout(timer)
        resolve({ request, response })
      })
      request.on('error', (error) => {
        clearTimeout(timer)
        reject(
          error instanceof GatewayError
            ? error
            : new GatewayError('upstream_unreachable', {
                detail: `${url.origin}: ${(error as NodeJS.ErrnoException).code ?? error.message}`,
              }),
        )
      })
      request.end(body.length > 0 ? body : undefined)
    })
  }

  /** Binds the session the upstream creates on `initialize` to the caller; forgets one the upstream ended. */
  #learnSession(x: McpExchange, response: IncomingMessage): void {
    const created = response.headers['mcp-session-id']
    const initialize = x.messages.some((m) => m.method === 'initialize')
    if (initialize && typeof created === 'string' && response.statusCode === 200) {
      this.#o.sessions.bind(created, x.principal?.key)
    }
    if (response.statusCode === 404 && x.sessionId !== undefined) this.#o.sessions.delete(x.sessionId)
  }

  async #relay(x: McpExchange, response: IncomingMessage): Promise<void> {
    const { res } = x
    const status = response.statusCode ?? 502
    if (status === 401 || status === 403) {
      response.resume()
      // The client authenticated to the gateway; an upstream refusal is the operator's to fix, not the client's.
      throw new GatewayError('upstream_refused', {
        detail: `the upstream answered ${status} to an authorized request`,
      })
    }
    const headers: Record<string, string> = {}
    for (const name of FORWARDED_RESPONSE_HEADERS) {
      const value = response.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    const type = mediaType(response.headers['content-type'])
    const listIds = new Set(
      x.messages.filter((m) => isRequest(m) && m.method === 'tools/list').map((m) => m.id as JsonRpcId),
    )
    if (type === 'application/json' && x.req.method === 'POST') {
      const body = await readBody(response, this.#o.maxBodyBytes).catch((error: unknown) => {
        // No answer is owed to the upstream: the rest of an oversized body is not worth draining.
        response.destroy()
        if (!(error instanceof BodyTooLarge)) throw error
        throw new GatewayError('upstream_too_large', {
          detail: `a JSON response above ${this.#o.maxBodyBytes} bytes`,
        })
      })
      let parsed: unknown
      try {
        parsed = JSON.parse(body.toString('utf8'))
      } catch {
        throw new GatewayError('upstream_garbage', { detail: 'the upstream answered invalid JSON' })
      }
      sendJson(res, status, this.#filter(parsed, listIds, x), headers)
      return
    }
    const streaming = type === 'text/event-stream'
    if (x.req.method === 'POST' && status === 200 && !streaming) {
      response.resume()
      throw new GatewayError('upstream_garbage', {
        detail: `the upstream answered a POST with content-type ${JSON.stringify(response.headers['content-type'])}`,
      })
    }
    res.writeHead(status, headers)
    res.flushHeaders()
    const sessionId = x.sessionId
    const idleMs = this.#o.streamIdleTimeoutMs
    // No heartbeat: the gateway keeping a stream busy would keep its session from ever being reaped.
    const idle =
      streaming && x.req.method === 'GET' && idleMs !== undefined
        ? setTimeout(() => response.destroy(), idleMs)
        : undefined
    if (idle) response.on('data', () => idle.refresh())
    if (streaming) {
      this.#o.metrics.streams.inc()
      if (sessionId !== undefined) this.#streams.set(sessionId, (this.#streams.get(sessionId) ?? 0) + 1)
    }
    try {
      if (streaming && listIds.size > 0) {
        const rewriter = new SseRewriter((data) => this.#rewriteEvent(data, listIds, x), this.#o.maxBodyBytes)
        await pipeline(response, rewriter, res)
      } else {
        await pipeline(response, res)
      }
    } catch (error) {
      // Headers are gone: all that is left is to end the stream, which the client sees as a disconnect.
      if (!res.destroyed) res.destroy()
      this.#o.logger.debug({ detail: (error as Error).message }, 'stream ended early')
    } finally {
      clearTimeout(idle)
      if (streaming) {
        this.#o.metrics.streams.dec()
        if (sessionId !== undefined) this.#streams.set(sessionId, (this.#streams.get(sessionId) ?? 1) - 1)
      }
    }
  }

  #rewriteEvent(data: string, listIds: Set<JsonRpcId>, x: McpExchange): string {
    let message: unknown
    try {
      message = JSON.parse(data)
    } catch {
      return data
    }
    const filtered = this.#filter(message, listIds, x)
    return filtered === message ? data : JSON.stringify(filtered)
  }

  #filter(message: unknown, listIds: Set<JsonRpcId>, x: McpExchange): unknown {
    if (Array.isArray(message)) return message.map((m) => this.#filter(m, listIds, x))
    const m = message as JsonRpcMessage
    if (listIds.size === 0 || typeof m !== 'object' || m === null || !listIds.has(m.id as JsonRpcId))
      return message
    if (m.result === undefined) return message
    return { ...m, result: this.#o.policy.filterToolsList(m.result, x.principal?.token) }
  }
}
