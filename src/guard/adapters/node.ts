import type { ServerResponse } from 'node:http'
import type { CheckOptions, Guard } from '../guard.ts'
import type { GuardAuthInfo } from './mcp-sdk.ts'
import { type AuthenticatedRequest, authenticateIncoming } from './node_http.ts'

export type { AuthenticatedRequest } from './node_http.ts'

/**
 * For node:http servers. Serves the Protected Resource Metadata, or writes the challenge, and then returns
 * `undefined`: the response is finished. Otherwise sets `req.auth` (the MCP SDK's `AuthInfo`, which its
 * `StreamableHTTPServerTransport` hands to tools as `extra.authInfo`) and returns it. The body is not read.
 */
export function authenticateNode(
  guard: Guard,
  req: AuthenticatedRequest,
  res: ServerResponse,
  options: CheckOptions = {},
): Promise<GuardAuthInfo | undefined> {
  return authenticateIncoming(guard, req, res, req.url ?? '/', options)
}

/** A node:http request listener that calls `handler` only for authenticated requests, with `req.auth` set. */
export function guardNodeHandler(
  guard: Guard,
  handler: (req: AuthenticatedRequest & { auth: GuardAuthInfo }, res: ServerResponse) => unknown,
  options: CheckOptions = {},
): (req: AuthenticatedRequest, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    try {
      const auth = await authenticateNode(guard, req, res, options)
      if (auth) await handler(Object.assign(req, { auth }), res)
    } catch (error) {
      // A request listener's rejection would go unhandled and stop the process.
      guard.options.logger.warn('request handler failed', { error: String(error) })
      if (res.headersSent) res.destroy()
      else res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"server_error"}')
    }
  }
}
