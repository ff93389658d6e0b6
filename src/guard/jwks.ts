import { GuardError } from './errors.ts'
import type { JwsAlgorithm } from './lib/algorithms.ts'
import { keyFitsAlgorithm } from './lib/algorithms.ts'
import { assertSecureUrl, FetchFailure, fetchJson } from './lib/http.ts'
import { importVerificationKey, type VerificationKey } from './lib/jwk.ts'

export interface KeySetOptions {
  /** Keys older than this are refreshed in the background on next use; default 10 minutes. */
  cacheMaxAgeMs?: number
  /** Minimum time between refetches caused by an unknown `kid`; default 30 s. */
  cooldownMs?: number
  timeoutMs?: number
  maxBytes?: number
  /**
   * Reads the JWKS document without HTTP: for an authorization server in the same process. The document
   * still goes through every key check; `url` then only names the key set in messages.
   */
  source?: (() => Promise<unknown>) | undefined
  /** Told about keys that were skipped and refreshes that failed. Never given key material. */
  onWarning?: (message: string) => void
}

/**
 * The JWKS of one issuer. Fetches are single-flight; an unknown `kid` triggers at most one refetch per
 * cooldown window, so a flood of made-up `kid`s cannot make the guard hammer the provider; when the
 * provider is down, the keys already known stay in use.
 */
export class RemoteKeySet {
  readonly url: URL
  #keys: VerificationKey[] | undefined
  /** The same keys by `kid`: kids are unique once imported (duplicates are dropped). */
  #byKid = new Map<string | undefined, VerificationKey>()
  #fetchedAt = 0
  #attemptedAt = Number.NEGATIVE_INFINITY
  #inflight: Promise<void> | undefined
  #lastFailure = ''
  readonly #options: Required<Omit<KeySetOptions, 'onWarning' | 'source'>> &
    Pick<KeySetOptions, 'onWarning' | 'source'>

  constructor(url: URL, options: KeySetOptions = {}) {
    assertSecureUrl(url, 'jwks_uri')
    this.url = url
    this.#options = {
      cacheMaxAgeMs: options.cacheMaxAgeMs ?? 600_000,
      cooldownMs: options.cooldownMs ?? 30_000,
      timeoutMs: options.timeoutMs ?? 5000,
      maxBytes: options.maxBytes ?? 512 * 1024,
      onWarning: options.onWarning,
      source: options.source,
    }
  }

  /** Number of fetches attempted so far; for tests and metrics. */
  fetches = 0

  /** Loads the keys now; throws `authorization_server_unavailable` with the reason when it cannot. */
  load(): Promise<void> {
    return this.#refreshOrThrow()
  }

  /**
   * The key for `kid` and `alg` when it is already loaded, without waiting: the path of every token but the
   * first after a rotation. Keys past their age are refreshed in the background (stale ones keep serving
   * while the provider is down, and retries stay within the cooldown).
   */
  knownKey(kid: string | undefined, alg: JwsAlgorithm): VerificationKey | undefined {
    if (!this.#keys) return undefined
    const now = Date.now()
    if (
      now - this.#fetchedAt > this.#options.cacheMaxAgeMs &&
      now - this.#attemptedAt >= this.#options.cooldownMs
    ) {
      void this.#refresh()
    }
    return this.#select(kid, alg)
  }

  async keyFor(kid: string | undefined, alg: JwsAlgorithm): Promise<VerificationKey> {
    if (!this.#keys) await this.#refreshOrThrow()
    let key = this.knownKey(kid, alg)
    if (!key && (this.#inflight || Date.now() - this.#attemptedAt >= this.#options.cooldownMs)) {
      await this.#refresh()
      key = this.#select(kid, alg)
    }
    if (!key) {
      throw new GuardError(
        'key_not_found',
        `no usable ${alg} key${kid === undefined ? '' : ` with kid ${JSON.stringify(kid)}`} in ${this.url.href}`,
      )
    }
    return key
  }

  #select(kid: string | undefined, alg: JwsAlgorithm): VerificationKey | undefined {
    const keys = this.#keys ?? []
    // Without a kid, a key is chosen only when there is no choice to make.
    const key = kid === undefined ? (keys.length === 1 ? keys[0] : undefined) : this.#byKid.get(kid)
    return key && keyFitsAlgorithm(alg, key.kty, key.crv) && (key.alg === undefined || key.alg === alg)
      ? key
      : undefined
  }

  async #refreshOrThrow(): Promise<void> {
    await this.#refresh()
    if (!this.#keys) {
      throw new GuardError(
        'authorization_server_unavailable',
        `JWKS ${this.url.href} could not be loaded: ${this.#lastFailure}`,
      )
    }
  }

  #refresh(): Promise<void> {
    this.#inflight ??= this.#fetch().finally(() => {
      this.#inflight = undefined
    })
    return this.#inflight
  }

  async #fetch(): Promise<void> {
    this.#attemptedAt = Date.now()
    this.fetches++
    try {
      const document = this.#options.source
        ? await this.#read(this.#options.source)
        : await fetchJson(this.url, { timeoutMs: this.#options.timeoutMs, maxBytes: this.#options.maxBytes })
      this.#keys = this.#importAll(document)
      this.#byKid = new Map(this.#keys.map((key) => [key.kid, key]))
      this.#fetchedAt = Date.now()
    } catch (cause) {
      if (!(cause instanceof FetchFailure)) throw cause
      this.#lastFailure = cause.message
      this.#options.onWarning?.(
        `JWKS ${this.url.href} ${cause.message}${this.#keys ? '; keeping the keys fetched before' : ''}`,
      )
    }
  }

  async #read(source: () => Promise<unknown>): Promise<Record<string, unknown>> {
    let document: unknown
    try {
      document = await source()
    } catch (cause) {
      throw new FetchFailure(`could not be read: ${(cause as Error).message}`, { cause })
    }
    if (typeof document !== 'object' || document === null) throw new FetchFailure('is not a JSON object')
    return document as Record<string, unknown>
  }

  #importAll(document: Record<string, unknown>): VerificationKey[] {
    if (!Array.isArray(document.keys))
      throw new FetchFailure('answered with a document that has no "keys" array')
    const imported: VerificationKey[] = []
    for (const [index, jwk] of document.keys.entries()) {
      const result = importVerificationKey(jwk)
      if ('rejected' in result)
        this.#options.onWarning?.(`JWKS ${this.url.href}: key #${index} skipped: ${result.rejected}`)
      else imported.push(result)
    }
    const counts = new Map<string | undefined, number>()
    for (const key of imported) counts.set(key.kid, (counts.get(key.kid) ?? 0) + 1)
    return imported.filter((key) => {
      if (key.kid === undefined || counts.get(key.kid) === 1) return true
      this.#options.onWarning?.(
        `JWKS ${this.url.href}: kid ${JSON.stringify(key.kid)} appears more than once; none of them is used`,
      )
      return false
    })
  }
}
