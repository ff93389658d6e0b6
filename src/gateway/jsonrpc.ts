import { JsonRefused, parseStrictJsonRpc } from './strict-json.ts'

export type JsonRpcId = string | number

export interface JsonRpcMessage {
  jsonrpc: '2.0'
  id?: JsonRpcId | null
  method?: string
  params?: Record<string, unknown>
  result?: unknown
  error?: { code: number; message: string; data?: unknown }
}

/** JSON-RPC 2.0 error codes, the MCP SDK's -32000 range for transport problems, and the 2026-07-28 ones. */
export const RPC = {
  parseError: -32_700,
  invalidRequest: -32_600,
  methodNotFound: -32_601,
  invalidParams: -32_602,
  internalError: -32_603,
  connectionClosed: -32_000,
  requestTimeout: -32_001,
  headerMismatch: -32_020,
  unsupportedProtocolVersion: -32_022,
} as const

export const isRequest = (m: JsonRpcMessage): boolean => typeof m.method === 'string' && m.id != null
export const isNotification = (m: JsonRpcMessage): boolean => typeof m.method === 'string' && m.id == null
export const isResponse = (m: JsonRpcMessage): boolean =>
  m.method === undefined && m.id !== undefined && ('result' in m || 'error' in m)

export function rpcError(id: JsonRpcId | null | undefined, code: number, message: string): JsonRpcMessage {
  return { jsonrpc: '2.0', id: id ?? null, error: { code, message } }
}

export type ParsedBody =
  | { ok: true; messages: JsonRpcMessage[]; batch: boolean }
  | { ok: false; code: number; message: string }

/**
 * Parses a POST body, once, strictly (see {@link parseStrictJsonRpc}): one JSON-RPC message or a batch of
 * at most `maxBatchMessages` of them, each checked for the 2.0 shape.
 */
export function parseJsonRpcBody(body: Buffer, maxBatchMessages: number): ParsedBody {
  let value: unknown
  try {
    value = parseStrictJsonRpc(body)
  } catch (error) {
    if (!(error instanceof JsonRefused)) throw error
    return { ok: false, code: error.code, message: error.message }
  }
  const batch = Array.isArray(value)
  const items = batch ? (value as unknown[]) : [value]
  if (items.length === 0) return { ok: false, code: RPC.invalidRequest, message: 'the batch is empty' }
  if (items.length > maxBatchMessages) {
    return {
      ok: false,
      code: RPC.invalidRequest,
      message: `the batch has ${items.length} messages, more than limits.max_batch_messages (${maxBatchMessages})`,
    }
  }
  for (const item of items) {
    if (!isJsonRpcMessage(item)) {
      return { ok: false, code: RPC.invalidRequest, message: 'the body is not a JSON-RPC 2.0 message' }
    }
  }
  return { ok: true, messages: items as JsonRpcMessage[], batch }
}

/** Whether `value` has the JSON-RPC 2.0 shape of a request, notification or response. */
export function isJsonRpcMessage(value: unknown): value is JsonRpcMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const fields = value as Record<string, unknown>
  if (fields.jsonrpc !== '2.0') return false
  if (
    fields.id !== undefined &&
    fields.id !== null &&
    typeof fields.id !== 'string' &&
    typeof fields.id !== 'number'
  )
    return false
  if (fields.params !== undefined && (typeof fields.params !== 'object' || fields.params === null))
    return false
  if (fields.method !== undefined) return typeof fields.method === 'string'
  return fields.id !== undefined && ('result' in fields || 'error' in fields)
}

/** The stateless-era revisions (no sessions, `server/discover`, per-request version) the gateway speaks. */
export const STATELESS_VERSIONS: readonly string[] = ['2026-07-28']
export const PROTOCOL_VERSION_META = 'io.modelcontextprotocol/protocolVersion'

/** Revisions are dates, which order as strings: anything after the last session-era one is stateless. */
export const isStatelessEra = (version: unknown): version is string =>
  typeof version === 'string' && version > '2025-11-25'
