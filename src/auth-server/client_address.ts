import type { IncomingMessage } from 'node:http'

/**
 * The address a request is counted against (rate limits, sign-in). Behind the trusted proxy (`proxy: true`)
 * it is the last `X-Forwarded-For` entry, the one that proxy appended: the entries before it are whatever the
 * client sent. Without it, the socket's peer. (Koa's `ctx.ip` takes the first entry: never use it.)
 */
export function clientAddress(req: IncomingMessage, proxy: boolean): string {
  const forwarded = proxy
    ? String(req.headers['x-forwarded-for'] ?? '')
        .split(',')
        .at(-1)
        ?.trim()
    : undefined
  return forwarded || req.socket.remoteAddress || 'unknown'
}
