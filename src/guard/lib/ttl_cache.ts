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

  /** Sets the key unless a live entry exists; returns whether it was set. */
  add(key: string, value: V, expiresAt: number, now = Date.now()): boolean {
    if (this.get(key, now) !== undefined) return false
    this.set(key, value, expiresAt)
    return true
  }
}
