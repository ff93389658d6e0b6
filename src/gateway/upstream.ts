import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { Principal } from './identity.ts'
import type { JsonRpcMessage } from './jsonrpc.ts'

/** One authorized request to the MCP endpoint, ready for the upstream. */
export interface McpExchange {
  req: IncomingMessage
  res: ServerResponse
  /** `undefined` for an anonymous discovery request. */
  principal: Principal | undefined
  /** The session the request names, already checked against its owner. */
  sessionId: string | undefined
  /** POST only. */
  body: Buffer
  messages: JsonRpcMessage[]
  batch: boolean
}

/** What the gateway forwards to: an HTTP MCP server, or stdio children it spawns. */
export interface Upstream {
  post(exchange: McpExchange): Promise<void>
  get(exchange: McpExchange): Promise<void>
  delete(exchange: McpExchange): Promise<void>
  /** True while the session has an open stream or a pending request, so it is not idle. */
  busy(sessionId: string): boolean
  /** Ends a session the gateway reaps (idle) or forgets. */
  endSession(sessionId: string): void
  /** Whether requests can be served now: the HTTP upstream answers, the stdio command can be started. */
  ready(): Promise<boolean>
  close(graceMs: number): Promise<void>
}

/**
 * Headers that belong to one connection (RFC 9110 7.6.1), or that Node sets for the hop it makes: never
 * forwarded in either direction. Names a `Connection` header lists are hop-by-hop too.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'host',
  'content-length',
])

/**
 * Client headers that stay at the gateway: its credentials (the credential mode decides what the upstream
 * gets instead), the session id, which goes on only once checked against its owner, and `Accept-Encoding`:
 * the gateway reads SSE events and `tools/list` answers, so they must come uncompressed.
 */
const CLIENT_ONLY: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'dpop',
  'mcp-session-id',
  'accept-encoding',
  // What a client writes about its own address or the URL it used would read to the upstream as what a
  // proxy in front of it attests: the gateway passes none of it on.
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-real-ip',
])

/**
 * Response headers the gateway owns: CORS (it answers for its own origin), and `set-cookie`, as the
 * client's cookies are never forwarded back to the upstream.
 */
const GATEWAY_OWNED = (name: string): boolean => name.startsWith('access-control-') || name === 'set-cookie'

export type HeaderMap = Record<string, string | string[]>

const NONE: readonly string[] = []

/** The names a `Connection` header marks as hop-by-hop. */
function connectionTokens(value: string | string[] | undefined): readonly string[] {
  if (value === undefined) return NONE
  return (Array.isArray(value) ? value.join(',') : value).split(',').map((t) => t.trim().toLowerCase())
}

/**
 * Every end-to-end client header (RFC 9110 7.6.1), `Origin` (checked before), trace context and
 * `Mcp-Param-*` among them, except the client's credentials and any `X-Gatehouse-*`: those names are the
 * gateway's to send, never the client's.
 */
export function forwardedRequestHeaders(headers: IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = {}
  const listed = connectionTokens(headers.connection)
  // for-in, not Object.entries: this runs on every request, and the pairs array would be garbage at once.
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || HOP_BY_HOP.has(name) || CLIENT_ONLY.has(name)) continue
    if (name.startsWith('x-gatehouse-') || listed.includes(name)) continue
    out[name] = value
  }
  return out
}

/**
 * Every end-to-end header of the upstream's answer, except those the gateway owns or already set on `res`
 * (`vary`, `retry-after` of its own refusals). `content-length` is hop-by-hop here: the caller sets it when
 * the body is relayed unchanged.
 */
export function forwardedResponseHeaders(headers: IncomingHttpHeaders, res: ServerResponse): HeaderMap {
  const out: HeaderMap = {}
  const listed = connectionTokens(headers.connection)
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || HOP_BY_HOP.has(name) || GATEWAY_OWNED(name) || listed.includes(name)) continue
    if (!res.hasHeader(name)) out[name] = value
  }
  return out
}

/** Resolves once `done()` holds, or after `ms`: how upstreams wait out the shutdown grace. */
export async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
}

/** How long what is ended at shutdown gets to write its last word before the gateway closes connections. */
export const LAST_WORD_MS = 1000
