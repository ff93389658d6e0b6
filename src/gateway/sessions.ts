import type { GatewayMetrics } from './metrics.ts'

interface SessionEntry {
  /** The principal key of the creator; `undefined` for an anonymous discovery session, claimed on first authenticated use. */
  owner: string | undefined
  lastSeen: number
}

export type SessionLookup = 'ok' | 'unknown'

export interface SessionLimits {
  maxSessions: number
  /** Keeps one subject from taking every session of the gateway. */
  maxSessionsPerUser: number
  /** Keeps anonymous discovery (no token, a child each on stdio) from taking the sessions signed-in users need. */
  maxAnonymousSessions: number
}

/**
 * Which subject each MCP session belongs to. A session id presented with another subject's token is
 * answered exactly like an unknown one (404), so a stolen or guessed id reveals nothing and a
 * legitimate client, per the transport spec, simply starts a new session.
 */
export class SessionRegistry {
  readonly #sessions = new Map<string, SessionEntry>()
  /**
   * Places held by admitted `initialize` requests whose session is not bound yet, by owner (`undefined`:
   * anonymous), so a burst of them cannot overshoot a limit. Freed by the bind, or when the request ends.
   */
  readonly #admitted = new Map<string | undefined, Set<symbol>>()
  readonly #metrics: GatewayMetrics
  readonly #limits: SessionLimits

  constructor(limits: SessionLimits, metrics: GatewayMetrics) {
    this.#limits = limits
    this.#metrics = metrics
  }

  get size(): number {
    return this.#sessions.size
  }

  /**
   * Whether `owner` may open one more session: below the gateway's limit and below the per-user one, or for
   * an anonymous one (`undefined`), below the anonymous limit. Sessions being created by admitted requests
   * still running count too.
   */
  admits(
    owner: string | undefined,
    request: { once(event: 'close', listener: () => void): unknown },
  ): boolean {
    let pending = 0
    for (const places of this.#admitted.values()) pending += places.size
    if (this.#sessions.size + pending >= this.#limits.maxSessions) return false
    const places = this.#admitted.get(owner) ?? new Set<symbol>()
    let owned = places.size
    for (const entry of this.#sessions.values()) if (entry.owner === owner) owned += 1
    const limit = owner === undefined ? this.#limits.maxAnonymousSessions : this.#limits.maxSessionsPerUser
    if (owned >= limit) return false
    const place = Symbol('admitted')
    this.#admitted.set(owner, places.add(place))
    request.once('close', () => this.#free(owner, place))
    return true
  }

  bind(id: string, owner: string | undefined): void {
    const [place] = this.#admitted.get(owner) ?? []
    if (place !== undefined) this.#free(owner, place)
    if (!this.#sessions.has(id)) this.#metrics.sessions.inc()
    this.#sessions.set(id, { owner, lastSeen: Date.now() })
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

  /** Sessions unused for longer than `maxIdleMs`. */
  idle(maxIdleMs: number, now = Date.now()): string[] {
    return [...this.#sessions].filter(([, e]) => now - e.lastSeen > maxIdleMs).map(([id]) => id)
  }
}
