/**
 * The 2026-07-28 shim: how the bridge speaks the stateless revision to a 2025 server. The checks its
 * requests must pass and the reshaping of the server's answers live here; the bridge holds the subjects' children.
 */
import { GatewayError } from '../errors.ts'
import { isRequest, type JsonRpcMessage, PROTOCOL_VERSION_META, RPC, STATELESS_VERSIONS } from '../jsonrpc.ts'
import type { McpExchange } from '../upstream.ts'
import { LEGACY_VERSIONS } from './child.ts'
import { addMembers, replaceValue } from './raw.ts'

const CLIENT_CAPABILITIES_META = 'io.modelcontextprotocol/clientCapabilities'

/**
 * Every version the bridge speaks: the stateless one, and the 2025 ones with sessions. `server/discover` and
 * the unsupported-version error list the same, so a client can pick from either.
 */
export const BRIDGE_VERSIONS: readonly string[] = [...STATELESS_VERSIONS, ...LEGACY_VERSIONS]

/**
 * Methods the 2026-07-28 revision removed: they never reach the child (the bridge takes resource
 * subscriptions itself, for `subscriptions/listen`).
 */
const NOT_SERVED = new Set([
  'initialize',
  'ping',
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
])

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/** The first field 2026-07-28 requires in every request's `_meta` that `meta` lacks. */
function missingMetaField(meta: unknown): string | undefined {
  if (!isObject(meta)) return '_meta'
  if (typeof meta[PROTOCOL_VERSION_META] !== 'string') return `_meta["${PROTOCOL_VERSION_META}"]`
  if (!isObject(meta[CLIENT_CAPABILITIES_META])) return `_meta["${CLIENT_CAPABILITIES_META}"]`
  return undefined
}

/** Methods whose target 2026-07-28 repeats in the `Mcp-Name` header, and the param it copies. */
const NAMED: Readonly<Record<string, string>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
}

/**
 * Why a 2026-07-28 request is refused before it reaches the child, if it is: a missing `Mcp-Method` header,
 * or a missing `Mcp-Name` for a request that names a tool, prompt or resource (the gateway already refused
 * one that disagrees with the body);
 * a `_meta` without the version or the client capabilities the revision requires on every request; a
 * `_meta` version other than the header's (the gateway already checked that a present `Mcp-Method` matches
 * the body); a method this era does not have here.
 */
export function statelessRefusal(exchange: McpExchange, version: string): GatewayError | undefined {
  const requests = exchange.messages.filter(isRequest)
  if (requests.length > 0 && exchange.req.headers['mcp-method'] === undefined)
    return new GatewayError('header_mismatch', { reason: 'the Mcp-Method header is required' })
  for (const m of requests) {
    const named = NAMED[m.method as string]
    if (
      named !== undefined &&
      m.params?.[named] !== undefined &&
      exchange.req.headers['mcp-name'] === undefined
    ) {
      const reason = `the Mcp-Name header is required for ${m.method}`
      return new GatewayError('header_mismatch', { reason })
    }
    const meta: unknown = m.params?._meta
    const missing = missingMetaField(meta)
    if (missing !== undefined) {
      const reason = `Invalid params: the request has no ${missing}; 2026-07-28 requires it on every request`
      return new GatewayError('request_meta_invalid', { reason })
    }
    if ((meta as Record<string, unknown>)[PROTOCOL_VERSION_META] !== version) {
      const reason = 'the MCP-Protocol-Version header does not match the request _meta'
      return new GatewayError('header_mismatch', { reason })
    }
    if (NOT_SERVED.has(m.method as string)) {
      const reason = `Method not found: ${m.method} (not available under protocol version ${version})`
      return new GatewayError('method_not_found', { reason })
    }
  }
  return undefined
}

/** The HTTP status of a 2026-07-28 JSON answer: 404 for method-not-found, as the revision requires. */
export const statelessStatus = (answer: JsonRpcMessage): number =>
  answer.error?.code === RPC.methodNotFound ? 404 : 200

/** Results of operations the 2026-07-28 revision lets clients cache; the bridge never lets them share. */
const CACHEABLE = new Set([
  'tools/list',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'server/discover',
])

/** The 2025 revisions' code for an unknown resource; 2026-07-28 uses invalid params (SEP-2164). */
const RESOURCE_NOT_FOUND_2025 = -32002

/**
 * A 2025 server's answer in 2026-07-28 form: `resultType` is required, and cacheable results need a
 * lifetime and scope (`private` with no lifetime, as `tools/list` is filtered for each token); an unknown
 * resource is an invalid-params error.
 */
export function statelessResult(message: JsonRpcMessage, method: string | undefined): JsonRpcMessage {
  if (method === 'resources/read' && message.error?.code === RESOURCE_NOT_FOUND_2025) {
    const next = { ...message, error: { ...message.error, code: RPC.invalidParams } }
    return replaceValue(message, next, ['error', 'code'], RPC.invalidParams)
  }
  const result = message.result
  if (!isObject(result)) return message
  const added: Record<string, unknown> = {}
  if (!('resultType' in result)) added.resultType = 'complete'
  // A member present as `null` is replaced, not added: a second one would be a duplicate key.
  let replaced = false
  if (method !== undefined && CACHEABLE.has(method))
    for (const [key, value] of [
      ['ttlMs', 0],
      ['cacheScope', 'private'],
    ] as const)
      if (result[key] == null) {
        added[key] = value
        replaced ||= key in result
      }
  if (Object.keys(added).length === 0) return message
  const next = { ...message, result: { ...result, ...added } }
  return replaced ? next : addMembers(message, next, ['result'], added)
}

/**
 * The child's capabilities as `subscriptions/listen` serves them: a shared child's resource updates reach
 * no one (nothing says whose subscription they answer), so it does not offer `subscribe`.
 */
function servedCapabilities(capabilities: unknown, shared: boolean): Record<string, unknown> {
  if (!isObject(capabilities)) return {}
  if (!shared || !isObject(capabilities.resources)) return capabilities
  const { subscribe: _subscribe, ...resources } = capabilities.resources
  return { ...capabilities, resources }
}

export function discoverResult(
  initialized: Record<string, unknown>,
  shared: boolean,
): JsonRpcMessage['result'] {
  const { capabilities, instructions, serverInfo } = initialized
  return statelessResult(
    {
      jsonrpc: '2.0',
      id: 0,
      result: {
        supportedVersions: BRIDGE_VERSIONS,
        capabilities: servedCapabilities(capabilities, shared),
        ...(instructions === undefined ? {} : { instructions }),
        _meta: { 'io.modelcontextprotocol/serverInfo': serverInfo },
      },
    },
    'server/discover',
  ).result
}
