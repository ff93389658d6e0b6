import { GatewayError } from './errors.ts'
import type { GatewayMetrics } from './metrics.ts'

interface SessionEntry {
  /** The principal key of the creator; `undefined` for an anonymous discovery session, claimed on first authenticated use. */
  owner: string | undefined
  lastSeen: number
  /** The client declared URL-mode elicitation at `initialize` (MCP 2025-11-25). */
  urlElicitation: boolean
}

export type SessionLookup = 'ok' | 'unknown'

export interface SessionLimits {
  maxSessions: number
  /** Keeps one subject from taking every session of the gateway. */
  maxSessionsPerUser: number
  /** Keeps anonymous discovery (no token, a child each on stdio) from taking the sessions signed-in users need. */
  maxAnonymousSessions: number
  /** Sessions one owner may open a minute: on stdio each is a child process started. */
  newSessionsPerUserPerMinute: number
  /** Sessions the whole gateway may open a minute. */
  newSessionsPerMinute: number
}

/** Why an `initialize` may not open a session: the HTTP status, when to retry, and the client's message. */
export interface SessionRefusal {
  error: GatewayError
  retryAfterSeconds: number
}

const MINUTE_MS = 60_000

/** The request whose end frees the place an admitted `initialize` holds. */
export interface AdmittedRequest {
  once(event: 'close', listener: () => void): unknown
}

/**
 * Who owns which MCP session, and the session limits: {@link SessionRegistry} in this process's memory, or
 * `RedisSessions` (shared_sessions.ts) for several instances in front of one HTTP upstream. The Redis one
 * answers asynchronously and throws `shared_state_unavailable` when Redis does not answer.
 */
export interface SessionBindings {
  admit(owner: string | undefined, request: AdmittedRequest): Promaybe<SessionRefusal | undefined>
  /** `urlElicitation`: the client declared URL-mode elicitation at `initialize` (MCP 2025-11-25). */
  bind(id: string, owner: string | undefined, urlElicitation?: boolean): Promaybe<void>
  /** Whether the session's client can be sent a URL-mode elicitation; false when not known here. */
  urlElicitation(id: string): boolean
  use(id: string, owner: string | undefined): Promaybe<SessionLookup>
  delete(id: string): Promaybe<void>
  /** Sessions to end now as unused for longer than `maxIdleMs` (none for Redis, where they expire by themselves). */
  idle(maxIdleMs: number): string[]
}

type Promaybe<T> = T | Promise<T>

/**
 * Which subject each MCP session belongs to. A session id presented with another subject's token is
 * answered exactly like an unknown one (404), so a stolen or guessed id reveals nothing and a
 * legitimate client, per the transport spec, simply starts a new session.
 */
export class SessionRegistry implements SessionBindings {
  readonly #sessions = new Map<string, SessionEntry>()
  /**
   * Places held by admitted `initialize` requests whose session is not bound yet, by owner (`undefined`:
   * anonymous), so a burst of them cannot overshoot a limit. Freed by the bind, or when the request ends.
   */
  readonly #admitted = new Map<string | undefined, Set<symbol>>()
  readonly #metrics: GatewayMetrics
  readonly #limits: SessionLimits
  /** When each owner's sessions of the last minute were admitted, oldest first. */
  readonly #startsByOwner = new Map<string | undefined, number[]>()
  readonly #starts: number[] = []

  constructor(limits: SessionLimits, metrics: GatewayMetrics) {
    this.#limits = limits
    this.#metrics = metrics
  }

  get size(): number {
    return this.#sessions.size
  }

  /**
   * Admits one more session for `owner` (`undefined`: anonymous), or says why not: the gateway's limit, the
   * owner's (the anonymous one for `undefined`), counting sessions that admitted requests are still creating,
   * then the owner's and the gateway's rate of new sessions per minute.
   */
  admit(owner: string | undefined, request: AdmittedRequest, now = Date.now()): SessionRefusal | undefined {
    const full = (retryAfterSeconds = 30): SessionRefusal => ({
      error: new GatewayError('too_many_sessions'),
      retryAfterSeconds,
    })
    let pending = 0
    for (const places of this.#admitted.values()) pending += places.size
    if (this.#sessions.size + pending >= this.#limits.maxSessions) return full()
    const places = this.#admitted.get(owner) ?? new Set<symbol>()
    let owned = places.size
    for (const entry of this.#sessions.values()) if (entry.owner === owner) owned += 1
    const limit = owner === undefined ? this.#limits.maxAnonymousSessions : this.#limits.maxSessionsPerUser
    if (owned >= limit) return full()
    const ownerStarts = this.#startsByOwner.get(owner) ?? []
    const ownerWait = waitForSlot(ownerStarts, this.#limits.newSessionsPerUserPerMinute, now)
    if (ownerWait > 0) {
      const perMinute = this.#limits.newSessionsPerUserPerMinute
      return {
        error: new GatewayError('too_many_new_sessions', {
          reason: `too many new MCP sessions: at most ${perMinute} a minute per user; try again later`,
        }),
        retryAfterSeconds: Math.ceil(ownerWait / 1000),
      }
    }
    const wait = waitForSlot(this.#starts, this.#limits.newSessionsPerMinute, now)
    if (wait > 0) return full(Math.ceil(wait / 1000))
    this.#startsByOwner.set(owner, ownerStarts)
    ownerStarts.push(now)
    this.#starts.push(now)
    const place = Symbol('admitted')
    this.#admitted.set(owner, places.add(place))
    request.once('close', () => this.#free(owner, place))
    return undefined
  }

  bind(id: string, owner: string | undefined, urlElicitation = false): void {
    const [place] = this.#admitted.get(owner) ?? []
    if (place !== undefined) this.#free(owner, place)
    if (!this.#sessions.has(id)) this.#metrics.sessions.inc()
    this.#sessions.set(id, { owner, lastSeen: Date.now(), urlElicitation })
  }

  urlElicitation(id: string): boolean {
    return this.#sessions.get(id)?.urlElicitation ?? false
  }

  /** Checks that `owner` may use session `id`, and notes the use. */
  use(id: string, owner: string | undefined): SessionLookup {
    const entry = this.#sessions.get(id)
    if (entry === undefined) return 'unknown'
    if (entry.owner === undefined && owner !== undefined) entry.owner = owner
    if (entry.owner !== owner) return 'unknown'
    entry.lastSeen = Date.now()
    return 'ok'
  }

  #free(owner: string | undefined, place: symbol): void {
    const places = this.#admitted.get(owner)
    places?.delete(place)
    if (places?.size === 0) this.#admitted.delete(owner)
  }

  delete(id: string): void {
    if (this.#sessions.delete(id)) this.#metrics.sessions.dec()
  }

  /** Sessions unused for longer than `maxIdleMs`. Also forgets owners who opened none in the last minute. */
  idle(maxIdleMs: number, now = Date.now()): string[] {
    for (const [owner, starts] of this.#startsByOwner)
      if (waitForSlot(starts, 1, now) === 0) this.#startsByOwner.delete(owner)
    return [...this.#sessions].filter(([, e]) => now - e.lastSeen > maxIdleMs).map(([id]) => id)
  }
}

/**
 * A sliding minute: drops the starts older than a minute from `starts` (oldest first), and returns how many
 * milliseconds until fewer than `perMinute` remain (0: there is room now).
 */
function waitForSlot(starts: number[], perMinute: number, now: number): number {
  let expired = 0
  while (expired < starts.length && (starts[expired] as number) <= now - MINUTE_MS) expired += 1
  starts.splice(0, expired)
  if (starts.length < perMinute) return 0
  return (starts[starts.length - perMinute] as number) + MINUTE_MS - now
}
