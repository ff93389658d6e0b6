import type { IncomingMessage, ServerResponse } from 'node:http'
import type { CheckOptions, Guard } from '../guard.ts'
import { headersFromRaw, type RequestHead } from '../lib/request_head.ts'
import { admit } from './fetch.ts'
import { type GuardAuthInfo, toAuthInfo } from './mcp-sdk.ts'

export { pathOf } from '../lib/request_head.ts'

/** A node request once the guard let it through: `auth` is what the MCP SDK's transport passes to tools. */
export type AuthenticatedRequest = IncomingMessage & { auth?: GuardAuthInfo }

/**
 * What the guard reads of a node request, with no web `Request` built: the method, the request-target
 * (`req.url`, or Express's `originalUrl`) and the credential fields, every occurrence kept. The guard reads
 * the path on its canonical origin, never on the Host header.
 */
export function requestHead(req: IncomingMessage, target: string): RequestHead {
  return { method: req.method ?? 'GET', url: target, headers: headersFromRaw(req.rawHeaders) }
}

export async function writeResponse(res: ServerResponse, response: Response): Promise<void> {
  const body = Buffer.from(await response.arrayBuffer())
  res.writeHead(response.status, Object.fromEntries(response.headers))
  res.end(body)
}

/**
 * Serves the metadata or writes the challenge and returns `undefined`, or sets and returns `req.auth`.
 * Shared by the node:http and Express adapters.
 */
export async function authenticateIncoming(
  guard: Guard,
  // `unknown`: Express's Request may already declare `auth` as the SDK's own AuthInfo.
  req: IncomingMessage & { auth?: unknown },
  res: ServerResponse,
  target: string,
  options: CheckOptions,
): Promise<GuardAuthInfo | undefined> {
  const admission = await admit(guard, requestHead(req, target), options)
  if (!admission.ok) {
    await writeResponse(res, admission.response)
    return undefined
  }
  const auth = toAuthInfo(admission.token, guard.resource)
  req.auth = auth
  return auth
}
