/**
 * The 2026-07-28 shim: how the bridge speaks the stateless revision to a 2025 server. The checks its
 * requests must pass and the reshaping of the server's answers live here; the bridge holds the subjects' children.
 */
import { isRequest, type JsonRpcMessage, PROTOCOL_VERSION_META, STATELESS_VERSIONS } from '../jsonrpc.ts'
import type { McpExchange } from '../upstream.ts'

/**
 * 2026-07-28 requests name their method in `Mcp-Method` and their version in `_meta` as well as in the
 * header: all must agree (the gateway already checked that a present `Mcp-Method` matches the body).
 */
export function statelessHeaderMismatch(exchange: McpExchange, version: string): string | undefined {
  const requests = exchange.messages.filter(isRequest)
  if (requests.length > 0 && exchange.req.headers['mcp-method'] === undefined)
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
export function statelessResult(message: JsonRpcMessage, method: string | undefined): JsonRpcMessage {
  const result = message.result as Record<string, unknown> | undefined
  if (typeof result !== 'object' || result === null) return message
  const stamped: Record<string, unknown> = { resultType: 'complete', ...result }
  if (method !== undefined && CACHEABLE.has(method)) {
    stamped.ttlMs ??= 0
    stamped.cacheScope ??= 'private'
  }
  return { ...message, result: stamped }
}

export function discoverResult(initialized: Record<string, unknown>): JsonRpcMessage['result'] {
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
