import { AsyncLocalStorage } from 'node:async_hooks'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { OidcAdapter, OidcPayload } from '../storage/store.ts'

/**
 * The records `oidc-provider` reads several times within one HTTP request (an interaction is loaded by the
 * page, again by `interactionFinished`, and written back; a session likewise). Within the request they are
 * read once and then served from what was read or written; nothing outlives the request, so another
 * instance's write is seen by the next request as before. Only these models: codes and refresh tokens are
 * single-use, and their reads must go to the store every time.
 */
export const REQUEST_CACHED_MODELS: ReadonlySet<string> = new Set(['Interaction', 'Session'])

/** A record's JSON as last read or written in this request; null when it is known to be absent. */
type RequestRecords = Map<string, string | null>

const requests = new AsyncLocalStorage<RequestRecords>()

/** Runs one HTTP request with its own, empty record cache. */
export function withRequestCache<T>(
  handle: (req: IncomingMessage, res: ServerResponse) => T,
): (req: IncomingMessage, res: ServerResponse) => T {
  return (req, res) => requests.run(new Map(), handle, req, res)
}

/** `inner` with `find` served from the request's cache, kept up to date by `upsert` and `destroy`. */
export function requestCached(model: string, inner: OidcAdapter): OidcAdapter {
  const key = (id: string) => `${model}\0${id}`
  return {
    ...inner,
    async find(id) {
      const records = requests.getStore()
      const cached = records?.get(key(id))
      if (cached !== undefined) return cached === null ? undefined : (JSON.parse(cached) as OidcPayload)
      const found = await inner.find(id)
      records?.set(key(id), found === undefined ? null : JSON.stringify(found))
      return found
    },
    async upsert(id, payload, expiresIn) {
      await inner.upsert(id, payload, expiresIn)
      // The store never returns a record whose expiry has come.
      requests.getStore()?.set(key(id), expiresIn > 0 ? JSON.stringify(payload) : null)
    },
    async destroy(id) {
      await inner.destroy(id)
      requests.getStore()?.set(key(id), null)
    },
    async revokeByGrantId(grantId) {
      await inner.revokeByGrantId(grantId)
      requests.getStore()?.clear()
    },
  }
}
