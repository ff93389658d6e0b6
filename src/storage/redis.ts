import { createHash } from 'node:crypto'
import type { RedisClientType } from '@redis/client'

/**
 * The Redis of `shared_state`: what is hot and short-lived and must be the same on every instance (session
 * bindings and limits, DPoP proofs seen, rate-limit counters). Every key gets the configured prefix.
 *
 * It never waits for Redis: a command sent while the connection is down fails at once (no offline queue),
 * and one that gets no answer within {@link COMMAND_TIMEOUT_MS} fails too. Callers turn a failure into a
 * 503; nothing falls back to this process's memory, which would let a replay or a foreign session through.
 */
export interface SharedRedis {
  /** Runs a Lua script atomically; `keys` are prefixed. */
  script(source: string, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown>
  /** Sets `key` unless it exists, until `expiresAtMs`; true when it was new. */
  setOnce(key: string, expiresAtMs: number): Promise<boolean>
  /** Counts one request in `bucket`'s fixed window; false past `limit` (the `Store.hit` contract). */
  hit(bucket: string, limit: number, windowSeconds: number): Promise<boolean>
  close(): Promise<void>
}

/** A command without an answer for this long has failed: the request waiting on it gets 503, not a hang. */
const COMMAND_TIMEOUT_MS = 2000
const CONNECT_TIMEOUT_MS = 2000

const HIT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`

/**
 * Connects to `url` (the client is loaded only now: one instance without Redis never loads it). Refuses to
 * start when Redis cannot be reached; once started, it reconnects by itself after an outage. `onError` hears
 * of the connection's errors and of every command that failed (each also rejects its caller).
 */
export async function openSharedRedis(
  url: string,
  prefix: string,
  onError: (error: Error) => void,
): Promise<SharedRedis> {
  const { createClient } = await import('@redis/client')
  const client = createClient({
    url,
    disableOfflineQueue: true,
    commandOptions: { timeout: COMMAND_TIMEOUT_MS },
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000),
    },
  }) as unknown as RedisClientType
  client.on('error', onError)
  try {
    await client.connect()
  } catch (error) {
    client.destroy()
    // The URL may hold a password: only the reason goes on.
    throw new Error(`cannot connect to shared_state.redis_url: ${(error as Error).message}`)
  }
  const key = (name: string) => `${prefix}${name}`
  const reported = <T>(command: Promise<T>): Promise<T> =>
    command.catch((error: Error) => {
      onError(error)
      throw error
    })
  return {
    script: (source, keys, args) =>
      reported(client.eval(source, { keys: keys.map(key), arguments: args.map(String) })),
    setOnce: async (name, expiresAtMs) =>
      (await reported(
        client.set(key(name), '1', {
          condition: 'NX',
          expiration: { type: 'PXAT', value: Math.ceil(expiresAtMs) },
        }),
      )) === 'OK',
    hit: async (bucket, limit, windowSeconds) => {
      const windowMs = windowSeconds * 1000
      const window = Math.floor(Date.now() / windowMs)
      // Hashed as in the store's rate_limits table: bucket names hold client addresses and usernames.
      const name = createHash('sha256').update(bucket).digest('base64url')
      const count = await reported(
        client.eval(HIT, { keys: [key(`rate:${name}:${window}`)], arguments: [String(windowMs)] }),
      )
      return Number(count) <= limit
    },
    close: async () => {
      if (client.isOpen) await client.close()
    },
  }
}
