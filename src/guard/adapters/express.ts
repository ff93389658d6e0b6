import type { RequestHandler } from 'express'
import type { CheckOptions, Guard } from '../guard.ts'
import { authenticateIncoming, requestHead, writeResponse } from './node_http.ts'

/**
 * Express 5 middleware: writes the challenge, or sets `req.auth` (the MCP SDK's `AuthInfo`) and calls
 * `next()`. It serves the Protected Resource Metadata itself when mounted at the root; mounted on a path,
 * it never sees the well-known paths, so mount {@link protectedResourceMetadata} at the root as well.
 */
export function guardMiddleware(guard: Guard, options: CheckOptions = {}): RequestHandler {
  return async (req, res, next) => {
    // originalUrl: a mount point strips its prefix from req.url, and the guard needs the full path.
    if (await authenticateIncoming(guard, req, res, req.originalUrl, options)) next()
  }
}

/** Serves the Protected Resource Metadata on its well-known paths; passes every other request on. */
export function protectedResourceMetadata(guard: Guard): RequestHandler {
  return async (req, res, next) => {
    const metadata = guard.metadataResponse(requestHead(req, req.originalUrl))
    if (metadata) await writeResponse(res, metadata)
    else next()
  }
}
