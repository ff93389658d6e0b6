import { randomBytes } from 'node:crypto'
import type { Store } from '../../storage/store.ts'

export interface BackoffOptions {
  /** Wrong passwords for one username from one address before attempts must wait; default 5. */
  freeFailures: number
  /** The longest wait between two attempts (1 s, 2 s, 4 s, … up to this); default 900 s. */
  maxDelaySeconds: number
}

/** The failures of one username from one address; `state` changes with every attempt. */
interface FailureRecord {
  failures: number
  /** Milliseconds since the epoch. */
  lastFailureAt: number
  state: string
}

const MODEL = 'GatehouseSignInFailures'
// A username and address with no wrong password for a day start afresh.
const MEMORY_SECONDS = 86_400
// Long enough to outlast an attempt (one scrypt); each state's gate is used once.
const GATE_SECONDS = 300

/** An attempt allowed to check its password; `settle` it with the outcome. */
export interface Ticket {
  key: string
  record: FailureRecord | undefined
}

/**
 * Slows down password guessing per username AND client address, counting wrong passwords only: after
 * `freeFailures` of them each further attempt from that address must wait twice as long as the last one. The
 * same user from another address is not slowed down, and a good password starts afresh.
 *
 * Attempts of one username and address are serialized through the store's atomic `hit` (one admission per
 * recorded state), so a burst of concurrent guesses counts as many failures as it makes, not one.
 */
export class SignInBackoff {
  readonly #records
  readonly #store: Store
  readonly #options: BackoffOptions

  constructor(store: Store, options: BackoffOptions) {
    this.#store = store
    this.#records = store.oidcAdapter(MODEL)
    this.#options = options
  }

  /** A ticket to check the password, or the seconds to wait first. */
  async admit(username: string, address: string): Promise<{ ticket: Ticket } | { retryAfter: number }> {
    const key = `${username}|${address}`
    const record = (await this.#records.find(key)) as FailureRecord | undefined
    const wait = record ? record.lastFailureAt + this.#delay(record.failures) * 1000 - Date.now() : 0
    if (wait > 0) return { retryAfter: Math.ceil(wait / 1000) }
    // Another attempt of this username and address is being checked right now: it settles the state first.
    const gate = `login:gate:${key}:${record?.state ?? 'none'}`
    if (!(await this.#store.hit(gate, 1, GATE_SECONDS))) return { retryAfter: 1 }
    return { ticket: { key, record } }
  }

  /** Records the outcome of an admitted attempt: a failure counts, a success forgets the failures. */
  async settle(ticket: Ticket, succeeded: boolean): Promise<void> {
    const next: FailureRecord = {
      failures: succeeded ? 0 : (ticket.record?.failures ?? 0) + 1,
      lastFailureAt: succeeded ? 0 : Date.now(),
      state: randomBytes(12).toString('base64url'),
    }
    await this.#records.upsert(ticket.key, { ...next }, MEMORY_SECONDS)
  }

  /** The wait after `failures` wrong passwords: none for the free ones, then 1 s doubling up to the maximum. */
  #delay(failures: number): number {
    const { freeFailures, maxDelaySeconds } = this.#options
    if (failures < freeFailures) return 0
    return Math.min(maxDelaySeconds, 2 ** Math.min(failures - freeFailures, 30))
  }
}
