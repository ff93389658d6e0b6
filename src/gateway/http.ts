import type { IncomingMessage, ServerResponse } from 'node:http'
import { pathOf } from '../guard/adapters/node_http.ts'
import { normalizedPath } from '../guard/lib/request_head.ts'
import type { GatewayError } from './errors.ts'
import { type JsonRpcId, type JsonRpcMessage, rpcError } from './jsonrpc.ts'

/**
 * The URL a request addresses: the canonical origin plus the request target, put together as the guard's
 * node adapter does, so `//evil.example/mcp` stays a path on this origin instead of naming another host.
 */
export const requestUrl = (req: IncomingMessage, origin: string): URL =>
  new URL(`${origin}${pathOf(req.url ?? '/')}`)

/**
 * Whether a request addresses `path` (a URL's pathname on `origin`), as {@link requestUrl} would say. The
 * MCP path itself, with or without a query, needs no URL parsed: it is every proxied request.
 */
export function addresses(req: IncomingMessage, origin: string, path: string): boolean {
  const target = req.url ?? '/'
  if (target.startsWith(path) && (target.length === path.length || target[path.length] === '?')) return true
  return normalizedPath(origin, target) === path
}

export class BodyTooLarge extends Error {
  override name = 'BodyTooLarge'
}

/**
 * Whether all of a message's body has arrived: the parser marks it complete only a turn after it buffered
 * the last bytes, so a body of declared length is complete once that many bytes wait in the buffer.
 */
export function arrived(stream: IncomingMessage): boolean {
  const length = stream.readableLength
  return stream.complete || (length > 0 && length === Number(stream.headers['content-length']))
}

/**
 * The whole body, when all of it has arrived and sits unread in the stream's buffer, as a small body that came
 * with its head has by the time the head is handled: taken at once, with no listener and no promise.
 * `undefined` when it has not all arrived (or is above `limit`, or the stream is already being read):
 * {@link readBody} then.
 */
export function bufferedBody(stream: IncomingMessage, limit: number): Buffer | undefined {
  if (stream.destroyed || stream.readableFlowing !== null || !arrived(stream)) return undefined
  if (stream.readableLength > limit) return undefined
  const body = (stream.read() as Buffer | null) ?? EMPTY
  // Flowing, the emptied stream still ends once the parser is done with it (an answer's socket then goes back
  // to the pool): nothing reads it again.
  stream.resume()
  return body
}

const EMPTY = Buffer.alloc(0)

/**
 * Reads the whole request body, refusing (before reading, when Content-Length says so) above `limit` bytes.
 * Plain listeners rather than an async iterator: this runs twice per proxied request, and the iterator's
 * promise per chunk cost more than the read. An aborted body destroys the stream. An oversize one is left
 * flowing, its rest discarded, so a client request can still be answered 413 (with `connection: close`, the
 * socket ends once that is sent); a caller that owes no answer destroys the stream itself.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLarge())
  // A stream closed before we listen would never emit again.
  if (req.destroyed) return Promise.reject(new Error('the body ended early'))
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const settle = (error: Error | undefined) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose)
      if (error === undefined)
        return resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks))
      if (error instanceof BodyTooLarge) req.resume()
      else req.destroy()
      reject(error)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) return settle(new BodyTooLarge())
      chunks.push(chunk)
    }
    const onEnd = () => settle(undefined)
    const onError = (error: Error) => settle(error)
    const onClose = () => settle(new Error('the body ended early'))
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose)
  })
}

/** Sends a web `Response` produced by the guard. */
export async function sendWebResponse(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {}
  response.headers.forEach((value, name) => {
    headers[name] = value
  })
  res.writeHead(response.status, headers)
  res.end(Buffer.from(await response.arrayBuffer()))
}

/**
 * Whether `res` already has its answer. Every helper below writes nothing then: a second `writeHead`
 * throws ERR_HTTP_HEADERS_SENT, and thrown from a timer or a child's output handler it ends the process.
 */
export const answered = (res: ServerResponse): boolean => res.headersSent || res.writableEnded

/** An answer without a body (202 to notifications, 200 to DELETE), unless `res` already has one. */
export function sendStatus(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  if (!answered(res)) res.writeHead(status, headers).end()
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string | string[]> = {},
): void {
  sendJsonText(res, status, JSON.stringify(body), headers)
}

/** {@link sendJson} for a body already serialized (relayed as it came). */
export function sendJsonText(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string | string[]> = {},
): void {
  if (answered(res)) return
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(text)
}

/** A transport-level failure as the JSON-RPC error MCP clients read from a non-2xx response. */
export function sendRpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  id?: JsonRpcId | null,
): void {
  // A stream under way cannot carry an error any more; ending it abruptly tells the client something failed.
  if (res.headersSent) {
    if (!res.writableEnded) res.destroy()
    return
  }
  sendJson(res, status, rpcError(id, code, message))
}

/** A gateway refusal as its registry entry says: status, JSON-RPC code, public text (never the detail). */
export function sendError(res: ServerResponse, error: GatewayError, id?: JsonRpcId | null): void {
  if (error.headers && !res.headersSent)
    for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value)
  if (error.data === undefined) {
    sendRpcError(res, error.status, error.rpcCode, error.publicText, id)
    return
  }
  const body = rpcError(id, error.rpcCode, error.publicText)
  sendJson(res, error.status, { ...body, error: { ...body.error, data: error.data } })
}

export const singleId = (messages: readonly JsonRpcMessage[]): JsonRpcId | null =>
  messages.length === 1 ? (messages[0]?.id ?? null) : null

/**
 * The media type of a `Content-Type` value, lower-cased, without parameters (`application/JSON; charset=utf-8`
 * is `application/json`); `undefined` without one. Types are compared whole: `application/jsonx` is not JSON.
 */
export function mediaType(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const semicolon = value.indexOf(';')
  return (semicolon === -1 ? value : value.slice(0, semicolon)).trim().toLowerCase() || undefined
}

/** Whether an `Accept` value lists `type` (exactly, or through a parameterised entry). */
export const accepts = (accept: string | undefined, type: string): boolean =>
  (accept ?? '').split(',').some((entry) => mediaType(entry) === type)

export const acceptsEventStream = (req: IncomingMessage): boolean =>
  accepts(req.headers.accept, 'text/event-stream')
