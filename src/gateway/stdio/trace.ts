/**
 * W3C trace context over stdio. An HTTP upstream gets the client's `traceparent` and `tracestate` headers
 * as they came; a child process has no headers, so the bridge continues the same context where MCP carries
 * it off HTTP: the keys `traceparent` and `tracestate` of each request's `params._meta` (SEP-414). The
 * gateway has no tracing of its own, so it adds no span: the child's work is a child of the client's span.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { isRequest, type JsonRpcMessage } from '../jsonrpc.ts'
import { addMembers } from './raw.ts'

/** Version 00 and later: trace id and parent id not all zeros; version ff is invalid (W3C Trace Context §3.2). */
const TRACEPARENT = /^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/
/** W3C's limit: 32 list members; a longer value is more than any tracer sends, and is dropped. */
const MAX_TRACESTATE = 512

/** The trace context of the client's request headers, if it is a valid one (a header given twice is not). */
function traceContext(headers: IncomingHttpHeaders): Record<string, string> | undefined {
  const { traceparent, tracestate } = headers
  if (typeof traceparent !== 'string' || !TRACEPARENT.test(traceparent)) return undefined
  const valid = typeof tracestate === 'string' && tracestate.length <= MAX_TRACESTATE
  return valid ? { traceparent, tracestate } : { traceparent }
}

/**
 * The requests with the headers' trace context in their `_meta`. A request that carries a `traceparent`
 * of its own keeps its context (the client set it there on purpose), and a `_meta` that is not an object is
 * left as it is for the server to refuse.
 */
export function withTraceContext(
  messages: readonly JsonRpcMessage[],
  headers: IncomingHttpHeaders,
): readonly JsonRpcMessage[] {
  const context = traceContext(headers)
  if (context === undefined) return messages
  return messages.map((message) => {
    if (!isRequest(message)) return message
    const { params } = message
    const meta = params?._meta
    if (meta === undefined) {
      const next = { ...message, params: { ...params, _meta: context } }
      if (params === undefined) return addMembers(message, next, [], { params: { _meta: context } })
      return addMembers(message, next, ['params'], { _meta: context })
    }
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta) || 'traceparent' in meta)
      return message
    const added = 'tracestate' in meta ? { traceparent: context.traceparent } : context
    return addMembers(
      message,
      { ...message, params: { ...params, _meta: { ...added, ...meta } } },
      ['params', '_meta'],
      added,
    )
  })
}
