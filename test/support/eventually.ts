import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Polls `check` until it returns a value, for effects that happen in another process, on a timer or after an
 * answer. The deadline is generous because CI runs on a loaded machine; a passing run returns at the first hit.
 */
export async function eventually<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  limitMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + limitMs
  while (Date.now() < deadline) {
    const value = await check()
    if (value !== undefined) return value
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}
