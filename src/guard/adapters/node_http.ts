import type { IncomingMessage, ServerResponse } from 'node:http'
import type { CheckOptions, Guard } from '../guard.ts'
import { admit } from './fetch.ts'
import { type GuardAuthInfo, toAuthInfo } from './mcp-sdk.ts'

/** A node request once the guard let it through: `auth` is what the MCP SDK's transport passes to tools. */
export type AuthenticatedRequest = IncomingMessage & { auth?: GuardAuthInfo }

// Methods the fetch Request refuses to represent.
const UNREPRESENTABLE_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK'])

/**
 * A body-less `Request` for the guard: headers, method and path only, so the body stream stays unread for
 * the MCP transport. The origin is the guard's canonical resource, never the Host header; `target` is the
 * request-target (`req.url`, or Express's `originalUrl`).
 */
export function toGuardRequest(guard: Guard, req: IncomingMessage, target: string): Request | undefined {
  const method = req.method ?? 'GET'
  if (UNREPRESENTABLE_METHODS.has(method.toUpperCase())) return undefined
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    // HTTP/2 pseudo-headers (":path") are not header fields.
    if (value === undefined || name.startsWith(':')) continue
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item)
  }
  return new Request(`${new URL(guard.resource).origin}${pathOf(target)}`, { method, headers })
}

// Concatenated, not resolved against a base: "//evil.example/x" must stay a path on the resource's origin.
export function pathOf(target: string): string {
  if (target.startsWith('/')) return target
  // Absolute-form (sent to proxies) or "*": keep only the path and query.
  if (!URL.canParse(target)) return '/'
  const url = new URL(target)
  return `${url.pathname}${url.search}`
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
  const request = toGuardRequest(guard, req, target)
  const admission = request
    ? await admit(guard, request, options)
    : { ok: false as const, response: new Response(null, { status: 405 }) }
  if (!admission.ok) {
    await writeResponse(res, admission.response)
    return undefined
  }
  const auth = toAuthInfo(admission.token, guard.resource)
  req.auth = auth
  return auth
}
