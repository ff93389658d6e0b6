const FIRST_PAUSE_MS = 1000
const LONGEST_PAUSE_MS = 30_000

/**
 * Pauses after failures in a row: the first lasts a second, each next one twice as long, up to 30 s; a success
 * ends them. A provider that is down is then asked once per pause instead of on every call, each caller waiting
 * out its timeout.
 */
export class Backoff {
  #failures = 0
  #until = 0

  /** Milliseconds left of the current pause: 0 when a try may go. */
  remainingMs(): number {
    return Math.max(0, this.#until - Date.now())
  }

  /** Counts a failure and starts its pause; returns the pause in milliseconds. */
  failed(): number {
    const pause = Math.min(LONGEST_PAUSE_MS, FIRST_PAUSE_MS * 2 ** this.#failures)
    this.#failures += 1
    this.#until = Date.now() + pause
    return pause
  }

  succeeded(): void {
    this.#failures = 0
    this.#until = 0
  }
}
