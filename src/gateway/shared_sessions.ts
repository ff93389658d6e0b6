import { createHash, randomUUID } from 'node:crypto'
import type { SharedRedis } from '../storage/redis.ts'
import { GatewayError, RETRY_SOON_SECONDS } from './errors.ts'
import type {
  AdmittedRequest,
  SessionBindings,
  SessionLimits,
  SessionLookup,
  SessionRefusal,
} from './sessions.ts'

/*
 * Keys (after shared_state.key_prefix):
 *   session:<id>         the owner's tag ("-": anonymous), expiring after the idle timeout, renewed on use
 *   sessions             sorted set of every open session (and place held by an admitted initialize),
 *                        scored by when it expires
 *   sessions:<tag>       the same for one owner
 *   starts, starts:<tag> sorted sets of the sessions admitted in the last minute, scored by when
 * Every script is one round trip and atomic, so two instances admitting at once cannot overshoot a limit.
 */

/** How long a place held by an admitted `initialize` lasts if its instance dies before freeing it. */
const PLACE_MS = 60_000
const MINUTE_MS = 60_000

const ADMIT = `local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {'full', 30000} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {'full', 30000} end
local function wait(key, perMinute)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ${MINUTE_MS})
  local n = redis.call('ZCARD', key)
  if n < perMinute then return 0 end
  local nth = redis.call('ZRANGE', key, n - perMinute, n - perMinute, 'WITHSCORES')
  return tonumber(nth[2]) + ${MINUTE_MS} - now
end
local w = wait(KEYS[4], tonumber(ARGV[4]))
if w > 0 then return {'owner_rate', w} end
w = wait(KEYS[3], tonumber(ARGV[5]))
if w > 0 then return {'full', w} end
for i = 3, 4 do
  redis.call('ZADD', KEYS[i], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[i], ${MINUTE_MS})
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now + ${PLACE_MS}, ARGV[6])
  redis.call('PEXPIRE', KEYS[i], ARGV[7])
end
return {'ok', 0}`

const BIND = `local expires = tonumber(ARGV[1]) + tonumber(ARGV[2])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[2])
for i = 1, 2 do
  if ARGV[5] ~= '' then redis.call('ZREM', KEYS[i], ARGV[5]) end
  redis.call('ZADD', KEYS[i], expires, ARGV[3])
  redis.call('PEXPIRE', KEYS[i], ARGV[6])
end
return 1`

/** An anonymous session is claimed by the first token that uses it, as in memory. */
const USE = `local owner = redis.call('GET', KEYS[1])
if not owner then return 0 end
if owner == '-' and ARGV[4] ~= '-' then
  owner = ARGV[4]
  redis.call('ZREM', KEYS[3], ARGV[3])
end
if owner ~= ARGV[4] then return 0 end
local expires = tonumber(ARGV[1]) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], owner, 'PX', ARGV[2])
for _, key in ipairs({KEYS[2], KEYS[4]}) do
  redis.call('ZADD', key, expires, ARGV[3])
  redis.call('PEXPIRE', key, ARGV[5])
end
return 1`

/** Renews a session's expiry whoever owns it: a stream of it is open on the calling instance. */
const TOUCH = `local owner = redis.call('GET', KEYS[1])
if not owner then return 0 end
local expires = tonumber(ARGV[1]) + tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for _, key in ipairs({KEYS[2], KEYS[2] .. ':' .. owner}) do
  redis.call('ZADD', key, expires, ARGV[3])
  redis.call('PEXPIRE', key, ARGV[4])
end
return 1`

const DELETE = `local owner = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if owner then redis.call('ZREM', KEYS[2] .. ':' .. owner, ARGV[1]) end
return 1`

const FREE = `redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`

/** The owner as a key part: "-" for anonymous discovery, else a hash of the principal key (issuer and subject). */
const tagOf = (owner: string | undefined): string =>
  owner === undefined ? '-' : createHash('sha256').update(owner).digest('base64url').slice(0, 22)

/**
 * The session bindings and limits of {@link SessionRegistry}, kept in Redis so that every instance in front
 * of one HTTP upstream agrees: a session opened through one instance is admitted on another for its owner,
 * and refused (404) for anyone else; the limits count every instance's sessions. Idle sessions expire in
 * Redis; a session with a stream open on this instance is kept alive by {@link idle}.
 *
 * Fails closed: when Redis does not answer, the request gets `shared_state_unavailable` (503); the failure
 * itself is logged by the Redis client's `onError` (`openSharedRedis`).
 */
export class RedisSessions implements SessionBindings {
  readonly #redis: SharedRedis
  readonly #limits: SessionLimits
  readonly #idleMs: number
  readonly #busy: (id: string) => boolean
  /** Places this instance's admitted `initialize` requests hold, by owner tag, until bound or ended. */
  readonly #admitted = new Map<string, Set<string>>()
  /** Sessions used through this instance, and when last: those with a stream open here are kept alive. */
  readonly #local = new Map<string, number>()
  /**
   * Sessions bound here whose client declared URL-mode elicitation. Kept by the instance that saw the
   * `initialize` only: elsewhere the session's client gets the connect URL in a tool result instead.
   */
  readonly #urlElicitation = new Set<string>()

  constructor(options: {
    redis: SharedRedis
    limits: SessionLimits
    idleTimeoutSeconds: number
    /** Whether this instance has a stream of the session open (it is in use, though no request arrives). */
    busy: (id: string) => boolean
  }) {
    this.#redis = options.redis
    this.#limits = options.limits
    this.#idleMs = options.idleTimeoutSeconds * 1000
    this.#busy = options.busy
  }

  async admit(owner: string | undefined, request: AdmittedRequest): Promise<SessionRefusal | undefined> {
    const tag = tagOf(owner)
    const place = `place:${randomUUID()}`
    const limit = owner === undefined ? this.#limits.maxAnonymousSessions : this.#limits.maxSessionsPerUser
    const [verdict, waitMs] = (await this.#run(
      ADMIT,
      ['sessions', `sessions:${tag}`, 'starts', `starts:${tag}`],
      [
        Date.now(),
        this.#limits.maxSessions,
        limit,
        this.#limits.newSessionsPerUserPerMinute,
        this.#limits.newSessionsPerMinute,
        place,
        this.#idleMs + PLACE_MS,
      ],
    )) as [string, number]
    const retryAfterSeconds = Math.max(1, Math.ceil(Number(waitMs) / 1000))
    if (verdict === 'owner_rate') {
      const perMinute = this.#limits.newSessionsPerUserPerMinute
      return {
        error: new GatewayError('too_many_new_sessions', {
          reason: `too many new MCP sessions: at most ${perMinute} a minute per user; try again later`,
        }),
        retryAfterSeconds,
      }
    }
    if (verdict !== 'ok') return { error: new GatewayError('too_many_sessions'), retryAfterSeconds }
    const places = this.#admitted.get(tag) ?? new Set<string>()
    this.#admitted.set(tag, places.add(place))
    request.once('close', () => {
      if (!this.#take(tag, place)) return
      this.#run(FREE, ['sessions', `sessions:${tag}`], [place]).catch(() => {
        // Not freed now, it expires after PLACE_MS.
      })
    })
    return undefined
  }

  async bind(id: string, owner: string | undefined, urlElicitation = false): Promise<void> {
    const tag = tagOf(owner)
    const [place = ''] = this.#admitted.get(tag) ?? []
    this.#take(tag, place)
    await this.#run(
      BIND,
      ['sessions', `sessions:${tag}`, `session:${id}`],
      [Date.now(), this.#idleMs, id, tag, place, this.#idleMs + PLACE_MS],
    )
    this.#local.set(id, Date.now())
    if (urlElicitation) this.#urlElicitation.add(id)
  }

  urlElicitation(id: string): boolean {
    return this.#urlElicitation.has(id)
  }

  async use(id: string, owner: string | undefined): Promise<SessionLookup> {
    const tag = tagOf(owner)
    const found = await this.#run(
      USE,
      [`session:${id}`, 'sessions', 'sessions:-', `sessions:${tag}`],
      [Date.now(), this.#idleMs, id, tag, this.#idleMs + PLACE_MS],
    )
    if (Number(found) !== 1) return 'unknown'
    this.#local.set(id, Date.now())
    return 'ok'
  }

  async delete(id: string): Promise<void> {
    this.#local.delete(id)
    this.#urlElicitation.delete(id)
    await this.#run(DELETE, [`session:${id}`, 'sessions'], [id])
  }

  /**
   * Nothing to end here: Redis expires idle sessions. A session with a stream open on this instance gets its
   * expiry renewed (no request may come while the stream carries the server's messages); the others this
   * instance used are forgotten once idle.
   */
  idle(maxIdleMs: number): string[] {
    const now = Date.now()
    for (const [id, lastUsed] of this.#local) {
      if (this.#busy(id)) {
        this.#local.set(id, now)
        const args = [now, this.#idleMs, id, this.#idleMs + PLACE_MS]
        this.#redis.script(TOUCH, [`session:${id}`, 'sessions'], args).catch(() => {
          // Reported by the Redis client; the next round tries again.
        })
      } else if (now - lastUsed > maxIdleMs) {
        this.#local.delete(id)
        this.#urlElicitation.delete(id)
      }
    }
    return []
  }

  #take(tag: string, place: string): boolean {
    const places = this.#admitted.get(tag)
    const taken = places?.delete(place) ?? false
    if (places?.size === 0) this.#admitted.delete(tag)
    return taken
  }

  async #run(source: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await this.#redis.script(source, keys, args)
    } catch (error) {
      throw new GatewayError('shared_state_unavailable', {
        detail: (error as Error).message,
        // Redis back within seconds is the usual end of an outage: tell the client when to try again.
        headers: { 'retry-after': String(RETRY_SOON_SECONDS) },
      })
    }
  }
}
