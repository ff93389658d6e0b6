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
}

/**
 * Which subject each MCP session belongs to. A session id presented with another subject's token is
 * answered exactly like an unknown one (404), so a stolen or guessed id reveals nothing and a
 * legitimate client, per the transport spec, simply starts a new session.
 */
export class SessionRegistry {
  readonly #sessions = new Map<string, SessionEntry>()
  readonly #metrics: GatewayMetrics
  readonly #limits: SessionLimits

  constructor(limits: SessionLimits, metrics: GatewayMetrics) {
    this.#limits = limits
    this.#metrics = metrics
  }

  get size(): number {
    return this.#sessions.size
  }

  /** Whether `owner` may open one more session: below the gateway's limit and below the per-user one. */
  admits(owner: string | undefined): boolean {
    if (this.#sessions.size >= this.#limits.maxSessions) return false
    if (owner === undefined) return true
    let owned = 0
    for (const entry of this.#sessions.values()) if (entry.owner === owner) owned += 1
    return owned < this.#limits.maxSessionsPerUser
  }

  bind(id: string, owner: string | undefined): void {
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

  delete(id: string): void {
    if (this.#sessions.delete(id)) this.#metrics.sessions.dec()
  }

  /** Sessions unused for longer than `maxIdleMs`. */
  idle(maxIdleMs: number, now = Date.now()): string[] {
    return [...this.#sessions].filter(([, e]) => now - e.lastSeen > maxIdleMs).map(([id]) => id)
  }
}
