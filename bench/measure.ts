/** The one measurement loop every in-process benchmark (and the HTTP load generator) goes through. */

export interface Measurement {
  ops: number
  seconds: number
  /** User + system CPU of the whole process, so work on the libuv threadpool (WebCrypto) counts too. */
  cpuSeconds: number
  opsPerSecond: number
  opsPerCpuSecond: number
}

/** Seconds of measured work per case; the warm-up is a quarter of it. */
export const benchSeconds = positiveNumber('BENCH_SECONDS', 2)

export function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`)
  return value
}

/**
 * Warms every case up, then times them in turn, `rounds` times, each round a slice of `seconds`; each case
 * keeps its median round by ops per CPU-second. On a shared machine a burst of contention then lands on
 * every case alike and is outvoted, instead of skewing whichever case happened to be running.
 */
export async function measureSideBySide(
  ops: readonly (() => unknown)[],
  { seconds = benchSeconds, rounds = 5 }: { seconds?: number; rounds?: number } = {},
): Promise<Measurement[]> {
  for (const op of ops) await timeLoop(op, { seconds: seconds / 4 })
  return interleave(
    ops.map((op) => () => timeLoop(op, { seconds: seconds / rounds })),
    rounds,
    (m) => m.opsPerCpuSecond,
  )
}

/** Runs each case once per round, round after round, and returns each case's median run by `score`. */
export async function interleave<T>(
  runs: readonly (() => Promise<T>)[],
  rounds: number,
  score: (result: T) => number,
): Promise<T[]> {
  return (await interleaveRounds(runs, rounds)).map((runsOfCase) => {
    const sorted = [...runsOfCase].sort((a, b) => score(a) - score(b))
    return sorted[Math.floor(sorted.length / 2)] as T
  })
}

/** Runs each case once per round, round after round; every run of each case, in round order. */
export async function interleaveRounds<T>(
  runs: readonly (() => Promise<T>)[],
  rounds: number,
): Promise<T[][]> {
  const results: T[][] = runs.map(() => [])
  for (let round = 0; round < rounds; round++) {
    for (const [i, run] of runs.entries()) results[i]?.push(await run())
  }
  return results
}

/**
 * The median of `a[i] / b[i]` over rounds: two cases measured in the same rounds, compared round by round, so
 * that the machine's load, which moves between rounds, weighs on both sides of each ratio alike.
 */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  const ratios = a.map((value, i) => value / (b[i] ?? Number.NaN)).sort((x, y) => x - y)
  return ratios[Math.floor(ratios.length / 2)] ?? Number.NaN
}

/**
 * Runs `op` back to back on `concurrency` chains until `seconds` have passed. A synchronous `op` never
 * yields, so it is timed without any promise overhead.
 */
export async function timeLoop(
  op: () => unknown,
  { seconds, concurrency = 1 }: { seconds: number; concurrency?: number },
): Promise<Measurement> {
  const cpuBefore = process.cpuUsage()
  const start = performance.now()
  const end = start + seconds * 1000
  const chain = async (): Promise<number> => {
    let ops = 0
    while (performance.now() < end) {
      const result = op()
      if (result instanceof Promise) await result
      ops++
    }
    return ops
  }
  const counts = await Promise.all(Array.from({ length: concurrency }, chain))
  const elapsed = (performance.now() - start) / 1000
  const cpu = process.cpuUsage(cpuBefore)
  const cpuSeconds = (cpu.user + cpu.system) / 1e6
  const ops = counts.reduce((a, b) => a + b, 0)
  return { ops, seconds: elapsed, cpuSeconds, opsPerSecond: ops / elapsed, opsPerCpuSecond: ops / cpuSeconds }
}
