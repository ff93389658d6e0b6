import { defineErrors, GatehouseError } from '../errors/index.ts'
import { RPC } from './jsonrpc.ts'

/**
 * Every refusal the gateway answers on the MCP endpoint has one code from this registry, as the guard's have
 * (`src/guard/errors.ts`): per code, the HTTP status, the JSON-RPC error code of the body and the public
 * text. The `detail` of a {@link GatewayError} (upstream URLs, limits, causes) goes to logs only.
 *
 * The JSON-RPC codes are those MCP clients already see: -32000 for transport refusals as the MCP SDK's own
 * server sends them (its client recognises a lost session by the 404 status), -32600/-32700 for the body.
 * `docs/errors.md` ("Gateway") lists the same codes; `test/errors.test.ts` keeps them in step.
 */
export const GATEWAY_ERRORS = {
  method_not_allowed: {
    status: 405,
    rpc: RPC.connectionClosed,
    description: 'the MCP endpoint accepts only POST, GET, DELETE and OPTIONS',
  },
  origin_forbidden: {
    status: 403,
    rpc: RPC.connectionClosed,
    description: 'Forbidden: this origin is not allowed',
  },
  shutting_down: { status: 503, rpc: RPC.connectionClosed, description: 'the gateway is shutting down' },
  shared_state_unavailable: {
    status: 503,
    rpc: RPC.connectionClosed,
    description: 'session state shared by the instances is unreachable; try again shortly',
  },
  anonymous_reads_full: {
    status: 503,
    rpc: RPC.connectionClosed,
    description: 'too many requests without a token; try again later',
  },
  body_too_large: { status: 413, rpc: RPC.invalidRequest, description: 'the request body is too large' },
  body_not_json: { status: 400, rpc: RPC.parseError, description: 'the body is not valid JSON' },
  body_not_jsonrpc: {
    status: 400,
    rpc: RPC.invalidRequest,
    description: 'the body is not a JSON-RPC 2.0 message',
  },
  machine_client_refused: {
    status: 403,
    rpc: RPC.invalidRequest,
    description: 'this request needs a signed-in user; the token is a client acting for itself',
  },
  unsupported_media_type: {
    status: 415,
    rpc: RPC.invalidRequest,
    description: 'Unsupported Media Type: the body must be application/json',
  },
  header_mismatch: {
    status: 400,
    rpc: RPC.headerMismatch,
    description: 'the Mcp-Method or Mcp-Name header does not match the body',
  },
  request_meta_invalid: {
    status: 400,
    rpc: RPC.invalidParams,
    description: 'Invalid params: the request _meta lacks a required field',
  },
  method_not_found: { status: 404, rpc: RPC.methodNotFound, description: 'Method not found' },
  unsupported_protocol_version: {
    status: 400,
    rpc: RPC.unsupportedProtocolVersion,
    description: 'unsupported protocol version',
  },
  session_required: {
    status: 400,
    rpc: RPC.connectionClosed,
    description: 'Bad Request: no Mcp-Session-Id; send initialize first',
  },
  session_not_found: { status: 404, rpc: RPC.connectionClosed, description: 'Session not found' },
  too_many_sessions: {
    status: 503,
    rpc: RPC.connectionClosed,
    description: 'too many MCP sessions; try again later',
  },
  too_many_new_sessions: {
    status: 429,
    rpc: RPC.connectionClosed,
    description: 'too many new MCP sessions for this user; try again later',
  },
  initialize_not_alone: {
    status: 400,
    rpc: RPC.invalidRequest,
    description: 'Bad Request: initialize must be sent alone',
  },
  stream_conflict: {
    status: 409,
    rpc: RPC.connectionClosed,
    description: 'Conflict: this session already has a GET stream',
  },
  event_id_unknown: {
    status: 400,
    rpc: RPC.connectionClosed,
    description: 'Bad Request: Last-Event-ID names no stream this session keeps',
  },
  listen_not_alone: {
    status: 400,
    rpc: RPC.invalidRequest,
    description: 'Bad Request: subscriptions/listen must be sent alone',
  },
  listen_filter_invalid: {
    status: 400,
    rpc: RPC.invalidParams,
    description: 'Invalid params: params.notifications is not a subscription filter',
  },
  too_many_listen_streams: {
    status: 429,
    rpc: RPC.connectionClosed,
    description: 'too many open subscriptions/listen streams for this user',
  },
  stateless_no_sessions: {
    status: 405,
    rpc: RPC.connectionClosed,
    description: 'Method Not Allowed: the stateless protocol has no sessions',
  },
  upstream_timeout: {
    status: 504,
    rpc: RPC.internalError,
    description: 'the MCP server did not answer in time',
  },
  upstream_unreachable: {
    status: 502,
    rpc: RPC.internalError,
    description: 'the MCP server cannot be reached',
  },
  upstream_garbage: {
    status: 502,
    rpc: RPC.internalError,
    description: 'the MCP server answered with something that is not JSON-RPC',
  },
  upstream_too_large: {
    status: 502,
    rpc: RPC.internalError,
    description: 'the MCP server answer is too large',
  },
  upstream_refused: {
    status: 502,
    rpc: RPC.internalError,
    description: 'the MCP server refused the request the gateway authorized; check upstream_credentials',
  },
  vault_unavailable: {
    status: 503,
    rpc: RPC.internalError,
    description:
      "the user's token for the upstream could not be obtained (its provider or the token vault failed); try again later",
  },
  upstream_stream_failed: {
    status: 502,
    rpc: RPC.internalError,
    description: 'the MCP server connection failed',
  },
  upstream_not_initialized: {
    status: 502,
    rpc: RPC.internalError,
    description: 'the MCP server could not be initialized',
  },
  exchange_refused: {
    status: 403,
    rpc: RPC.connectionClosed,
    description: "the authorization server refused a token for the MCP server on the user's behalf",
  },
  exchange_subject_rejected: {
    status: 401,
    rpc: RPC.connectionClosed,
    description: "the authorization server no longer accepts the user's token; sign in again",
  },
  exchange_failed: {
    status: 502,
    rpc: RPC.internalError,
    description: 'the gateway could not get a token for the MCP server; check upstream_credentials.exchange',
  },
  exchange_unavailable: {
    status: 503,
    rpc: RPC.internalError,
    description: 'the authorization server that exchanges tokens cannot be reached; try again later',
  },
  internal_error: { status: 500, rpc: RPC.internalError, description: 'internal error in the gateway' },
} as const satisfies Record<string, { status: number; rpc: number; description: string }>

export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS

export interface GatewayErrorOptions extends ErrorOptions {
  /** For logs only: the values compared, the URL called, the cause. Never a token. */
  detail?: string
  /**
   * What exactly was wrong with the client's own request (which header, which limit, where the JSON
   * broke), sent instead of the description. Only what the client sent or may know: never server internals.
   */
  reason?: string
  /** The JSON-RPC error's `data` (the supported versions). */
  data?: unknown
  /** Response headers of the refusal: a `WWW-Authenticate` challenge, a `Retry-After`. */
  headers?: Readonly<Record<string, string>>
}

/**
 * The `Retry-After` of a refusal the gateway expects to pass within seconds (a store or provider briefly
 * away, a full queue): one figure for all of them.
 */
export const RETRY_SOON_SECONDS = 5

/** The gateway's registry as a part of the shared error model (`src/errors`). */
export const GATEWAY_ERROR_SET = defineErrors('gateway', GATEWAY_ERRORS)

/**
 * The one error class of the gateway. `message` and `detail` are for operators; {@link publicText} for the
 * wire: the reason about the client's own request when there is one, else the fixed description.
 */
export class GatewayError extends GatehouseError<typeof GATEWAY_ERRORS> {
  override name = 'GatewayError'
  readonly reason: string | undefined
  readonly data: unknown
  readonly headers: Readonly<Record<string, string>> | undefined

  constructor(code: GatewayErrorCode, options: GatewayErrorOptions = {}) {
    super(GATEWAY_ERROR_SET, code, options.detail, options)
    this.reason = options.reason
    this.data = options.data
    this.headers = options.headers
  }

  get rpcCode(): number {
    return this.entry.rpc
  }

  get publicText(): string {
    return this.reason ?? this.publicDescription
  }
}
