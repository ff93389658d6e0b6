import { createHash } from 'node:crypto'
import type { DpopReplayStore } from '../guard/index.ts'
import type { SharedRedis } from '../storage/redis.ts'

/**
 * The guard's DPoP replay store in Redis, so that a proof accepted by one instance is refused by every other
 * (RFC 9449 §11.1). The key is a hash of the key thumbprint and the `jti`: the `jti` is the client's string,
 * of any length. A Redis failure throws, and the guard refuses the proof (`dpop_replay_unavailable`, 503).
 */
export function redisReplayStore(redis: SharedRedis): DpopReplayStore {
  return {
    add: async (key, expiresAt) => {
      const name = `dpop:${createHash('sha256').update(key).digest('base64url')}`
      return (await redis.setOnce(name, expiresAt)) ? 'added' : 'seen'
    },
  }
}
