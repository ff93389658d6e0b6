import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { accessTokenClaims, guardFor, startIssuer } from './fixtures.ts'
import { positiveNumber } from './measure.ts'

export interface MemorySnapshot {
  verified: number
  rss: number
  heapTotal: number
  heapUsed: number
}

export interface MemoryResult {
  cacheMaxEntries: number
  snapshots: MemorySnapshot[]
}

/** Signed in parallel batches: jose signs on the threadpool, so the batch uses a second core if there is one. */
const BATCH = 100

/**
 * Verifies distinct ES256 tokens through one guard with its default cache, so every verification adds an
 * entry until the cache is full; the heap must then stay flat however many more tokens arrive.
 */
export async function benchMemory(): Promise<MemoryResult> {
  const count = positiveNumber('BENCH_MEMORY_TOKENS', 100_000)
  const gc = exposeGc()
  const idp = await startIssuer('ES256')
  try {
    const guard = await guardFor(idp)
    const { cacheMaxEntries } = guard.options
    const checkpoints = new Set([cacheMaxEntries, Math.round(count / 2), count].filter((n) => n <= count))
    const snapshot = (verified: number): MemorySnapshot => {
      gc()
      const { rss, heapTotal, heapUsed } = process.memoryUsage()
      return { verified, rss, heapTotal, heapUsed }
    }
    const snapshots = [snapshot(0)]
    for (let verified = 0; verified < count; ) {
      const size = Math.min(BATCH, count - verified, nextCheckpoint(checkpoints, verified) - verified)
      const tokens = await Promise.all(
        Array.from({ length: size }, () => idp.sign(accessTokenClaims(idp.issuer))),
      )
      for (const token of tokens) await guard.verifyToken(token)
      verified += size
      if (checkpoints.has(verified)) snapshots.push(snapshot(verified))
    }
    return { cacheMaxEntries, snapshots }
  } finally {
    await idp.close()
  }
}

function nextCheckpoint(checkpoints: Set<number>, after: number): number {
  return Math.min(...[...checkpoints].filter((n) => n > after))
}

/** A full collection before each reading, so the figures show what is retained, not what awaits collection. */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}
