import type { IncomingMessage, ServerResponse } from 'node:http'
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

/** Client headers an upstream may see; everything else, credentials first, stays at the gateway. */
export const FORWARDED_REQUEST_HEADERS = [
  'accept',
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
  'mcp-method',
  'mcp-name',
  'user-agent',
  // The upstream may run its own Origin check (the transport spec asks servers to); only allowed ones get here.
  'origin',
] as const

export const FORWARDED_RESPONSE_HEADERS = [
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'cache-control',
  'retry-after',
  'allow',
] as const

/** Resolves once `done()` holds, or after `ms`: how upstreams wait out the shutdown grace. */
export async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
}

/** How long what is ended at shutdown gets to write its last word before the gateway closes connections. */
export const LAST_WORD_MS = 1000
