import { AsyncLocalStorage } from 'node:async_hooks'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { OidcAdapter, OidcPayload, OidcWrite, Store, User } from '../storage/store.ts'
import { takeTokenCount } from './rate_limit.ts'
import { REDEEMED_MODELS } from './rotation.ts'

/**
 * The records `oidc-provider` reads several times within one HTTP request (an interaction is loaded by the
 * page, again by `interactionFinished`, and written back; a session likewise; a grant by each step of a token
 * request). Within the request they are read once and then served from what was read or written; nothing
 * outlives the request, so another instance's write is seen by the next request as before. Only these models:
 * codes and refresh tokens are single-use, and their reads must go to the store every time.
 */
export const REQUEST_CACHED_MODELS: ReadonlySet<string> = new Set(['Interaction', 'Session', 'Grant'])

interface RequestRecords {
  /** A record's JSON as last read or written in this request; null when it is known to be absent. */
  records: Map<string, string | null>
  /** Users read with a code or refresh token (`findWithGrant`); null when known to be absent. */
  users: Map<string, User | null>
  /** In an authorization request, its writes not made yet, the last of each record. */
  deferred?: Map<string, OidcWrite>
}

const requests = new AsyncLocalStorage<RequestRecords>()

/** Runs one HTTP request with its own, empty record cache. */
export function withRequestCache<T>(
  handle: (req: IncomingMessage, res: ServerResponse) => T,
): (req: IncomingMessage, res: ServerResponse) => T {
  return (req, res) => requests.run({ records: new Map(), users: new Map() }, handle, req, res)
}

const key = (model: string, id: string) => `${model}\0${id}`
/** Records found by uid are cached apart: a write of the model forgets them all (a write may move a uid). */
const uidKey = (model: string, uid: string) => `${model}\0uid\0${uid}`

function forgetUids(records: Map<string, string | null> | undefined, model: string) {
  const prefix = uidKey(model, '')
  for (const cached of records?.keys() ?? []) if (cached.startsWith(prefix)) records?.delete(cached)
}

/** `inner` with `find` and `findByUid` served from the request's cache, kept up to date by `upsert` and `destroy`. */
export function requestCached(model: string, inner: OidcAdapter): OidcAdapter {
  const cachedFind = async (cacheKey: string, read: () => Promise<OidcPayload | undefined>) => {
    const records = requests.getStore()?.records
    const cached = records?.get(cacheKey)
    if (cached !== undefined) return cached === null ? undefined : (JSON.parse(cached) as OidcPayload)
    const found = await read()
    records?.set(cacheKey, found === undefined ? null : JSON.stringify(found))
    return found
  }
  return {
    ...inner,
    find: (id) => cachedFind(key(model, id), () => inner.find(id)),
    findByUid: (uid) => cachedFind(uidKey(model, uid), () => inner.findByUid(uid)),
    async upsert(id, payload, expiresIn) {
      await inner.upsert(id, payload, expiresIn)
      const records = requests.getStore()?.records
      forgetUids(records, model)
      // The store never returns a record whose expiry has come.
      records?.set(key(model, id), expiresIn > 0 ? JSON.stringify(payload) : null)
    },
    async destroy(id) {
      await inner.destroy(id)
      const records = requests.getStore()?.records
      forgetUids(records, model)
      records?.set(key(model, id), null)
    },
    async revokeByGrantId(grantId) {
      await inner.revokeByGrantId(grantId)
      requests.getStore()?.records.clear()
    },
  }
}

/**
 * `inner` (codes, refresh tokens) with `find` reading the grant and the user in the same statement, for the
 * rest of the request: the provider looks up both right after the token. In a token request not counted yet
 * against the rate limit, the count is made in that statement too.
 */
export function withGrantPrefetch(inner: OidcAdapter): OidcAdapter {
  return {
    ...inner,
    async find(id) {
      const request = requests.getStore()
      if (!request) return inner.find(id)
      const count = takeTokenCount()
      const { found, withinLimit } = await inner.findWithGrant(id, count?.hit)
      count?.settle(withinLimit)
      if (!found) return undefined
      const { record, grant, user } = found
      if (typeof record.grantId === 'string')
        request.records.set(key('Grant', record.grantId), grant ? JSON.stringify(grant) : null)
      if (typeof record.accountId === 'string') request.users.set(record.accountId, user ?? null)
      return record
    },
  }
}

/** The user, as read with this request's code or refresh token when it was, else from the store. */
export async function findUser(store: Store, id: string): Promise<User | undefined> {
  const read = requests.getStore()?.users.get(id)
  return read === undefined ? store.users.findById(id) : (read ?? undefined)
}

/**
 * The models whose writes an authorization request (`/authorize` and its resume) defers: the provider writes
 * the interaction, the session, the grant and the code one by one; they are made in one transaction
 * instead (PostgreSQL: one round trip), when the provider has answered and before the answer is sent.
 */
export const DEFERRED_MODELS: ReadonlySet<string> = new Set([
  'Interaction',
  'Session',
  'Grant',
  'AuthorizationCode',
])

/** Provider middleware: defers the writes of each request to `route` or its resume paths, then makes them. */
export function deferredWritesMiddleware(route: string, store: Store): Parameters<Provider['use']>[0] {
  return async (ctx, next) => {
    const request = requests.getStore()
    if (!request || (ctx.path !== route && !ctx.path.startsWith(`${route}/`))) return next()
    request.deferred = new Map()
    try {
      await next()
    } finally {
      await flush(store, request).catch((error: unknown) => {
        // Not written: the answer (503 or a server error, outage.ts) must not send the browser on.
        ctx.remove('location')
        throw error
      })
      request.deferred = undefined
    }
  }
}

/** Makes the deferred writes, when `models` is given only if one of them is of these models. */
async function flush(store: Store, request: RequestRecords, models?: readonly string[]): Promise<void> {
  const writes = request.deferred
  if (!writes?.size) return
  if (models && ![...writes.values()].some((write) => 'model' in write && models.includes(write.model)))
    return
  request.deferred = new Map()
  await store.oidcTransaction([...writes.values()])
}

/**
 * `inner` with `upsert` and `destroy` deferred in an authorization request; any other call that may meet a
 * deferred write makes them first, so that the store never answers with a state older than the request's own
 * writes.
 */
export function deferring(model: string, inner: OidcAdapter, store: Store): OidcAdapter {
  const defer = (write: OidcWrite & { id: string }) => {
    const deferred = requests.getStore()?.deferred
    deferred?.set(key(model, write.id), write)
    return deferred !== undefined
  }
  // A read of this model waits for its writes; a code's or refresh token's read joins the grant. A grant's
  // revocation deletes the records of every model that name it: it waits for all of them.
  const read = REDEEMED_MODELS.has(model) ? [model, 'Grant'] : [model]
  /** Makes the deferred writes of `models`, or of every model when none are named. */
  const flushedOf = async (models?: readonly string[]) => {
    const request = requests.getStore()
    if (request) await flush(store, request, models)
  }
  const flushed = () => flushedOf(read)
  return {
    async upsert(id, payload, expiresIn) {
      if (!defer({ kind: 'upsert', model, id, payload, expiresIn }))
        await inner.upsert(id, payload, expiresIn)
    },
    async destroy(id) {
      if (!defer({ kind: 'destroy', model, id })) await inner.destroy(id)
    },
    find: async (id) => {
      await flushed()
      return inner.find(id)
    },
    findWithGrant: async (id, count) => {
      await flushed()
      return inner.findWithGrant(id, count)
    },
    findByUid: async (uid) => {
      await flushed()
      return inner.findByUid(uid)
    },
    findByUserCode: async (userCode) => {
      await flushed()
      return inner.findByUserCode(userCode)
    },
    consume: async (id) => {
      await flushed()
      return inner.consume(id)
    },
    revokeByGrantId: async (grantId) => {
      await flushedOf()
      return inner.revokeByGrantId(grantId)
    },
  }
}
