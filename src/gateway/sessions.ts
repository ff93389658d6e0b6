import type { GatewayMetrics } from './metrics.ts'

interface SessionEntry {
  /** The principal key of the creator; `undefined` for an anonymous discovery session, claimed on first authenticated use. */
  owner: string | undefined
  lastSeen: number
}

export type SessionLookup = 'ok' | 'unknown'

/**
 * Which subject each MCP session belongs to. A session id presented with another subject's token is
 * answered exactly like an unknown one (404), so a stolen or guessed id reveals nothing and a
 * legitimate client, per the transport spec, simply starts a new session.
 */
export class SessionRegistry {
  readonly #sessions = new Map<string, SessionEntry>()
  readonly #metrics: GatewayMetrics
  readonly maxSessions: number

  constructor(maxSessions: number, metrics: GatewayMetrics) {
    this.maxSessions = maxSessions
    this.#metrics = metrics
  }

  get size(): number {
    return this.#sessions.size
  }

  get full(): boolean {
    return this.#sessions.size >= this.maxSessions
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
