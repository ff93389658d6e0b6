/**
 * A bounded map whose entries expire. Insertion order doubles as eviction order: when full, the oldest
 * entry goes. Enough for caches whose entries are short-lived and of similar lifetime.
 */
export class TtlCache<V> {
  readonly #entries = new Map<string, { value: V; expiresAt: number }>()
  readonly #maxEntries: number

  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries
  }

  get size(): number {
    return this.#entries.size
  }

  get(key: string, now = Date.now()): V | undefined {
    const entry = this.#entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAt <= now) {
      this.#entries.delete(key)
      return undefined
    }
    return entry.value
  }

  set(key: string, value: V, expiresAt: number): void {
    if (this.#maxEntries <= 0) return
    this.#entries.delete(key)
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string
      this.#entries.delete(oldest)
    }
    this.#entries.set(key, { value, expiresAt })
  }
}

/**
 * Keys seen until they expire, for replay detection. Unlike {@link TtlCache} it never forgets a live key
 * to make room: that would let a flood of new keys make an old one acceptable again. When full of live
 * keys it refuses new ones instead.
 */
export class ReplayCache {
  readonly #expiries = new Map<string, number>()
  readonly maxEntries: number

  constructor(maxEntries: number) {
    this.maxEntries = maxEntries
  }

  get size(): number {
    return this.#expiries.size
  }

  /** Remembers `key` until `expiresAt`: `seen` if it is already remembered, `full` if there is no room. */
  add(key: string, expiresAt: number, now = Date.now()): 'added' | 'seen' | 'full' {
    const known = this.#expiries.get(key)
    if (known !== undefined && known > now) return 'seen'
    this.#expiries.delete(key)
    if (this.#expiries.size >= this.maxEntries) this.#dropExpired(now)
    if (this.#expiries.size >= this.maxEntries) return 'full'
    this.#expiries.set(key, expiresAt)
    return 'added'
  }

  /** Oldest first, stopping at the first live key: entries arrive roughly in expiry order, so this is cheap. */
  #dropExpired(now: number): void {
    for (const [key, expiresAt] of this.#expiries) {
      if (expiresAt > now) return
      this.#expiries.delete(key)
    }
  }
}
