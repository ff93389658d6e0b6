import type { IncomingMessage, ServerResponse } from 'node:http'
import { sendOAuthError } from './errors.ts'

/** Methods that change nothing: a cross-site page can cause them anyway (a link, an image). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Refuses (403) a state-changing request that a browser sent from an origin not in `allowed`: without it, any
 * web page the user opens (or one rebinding its DNS name to this host) could register a client and redeem a
 * code in the user's name. Requests without `Origin` (non-browser clients) pass. True when it answered.
 */
export function refuseForeignOrigin(
  req: IncomingMessage,
  res: ServerResponse,
  allowed: ReadonlySet<string>,
): boolean {
  const origin = req.headers.origin
  if (origin === undefined || SAFE_METHODS.has(req.method ?? 'GET') || allowed.has(origin)) return false
  sendOAuthError(
    res,
    'origin_not_allowed',
    `requests from origin ${origin} are not allowed; the operator may add it to allowed_origins`,
  )
  return true
}
