/**
 * The guard's cold check (cache off) of another tree against this one's, with the raw verify baseline, in one
 * process: the same token, alternated rounds, each case's median and spread of its ratio to raw per round.
 *
 *   node bench/verify-ab.ts /path/to/other/tree     (ALGS=RS256,ES256 ROUNDS=11 BENCH_SECONDS=0.5)
 */
import { resolve } from 'node:path'
import type { createGuard as CreateGuard } from '../src/guard/index.ts'
import { createGuard } from '../src/guard/index.ts'
import { ALGORITHMS, accessTokenClaims, type BenchAlgorithm, RESOURCE, startIssuer } from './fixtures.ts'
import { benchSeconds, positiveNumber, timeLoop } from './measure.ts'
import { rawVerify } from './verify.ts'

const other = process.argv[2]
if (!other) throw new Error('usage: node bench/verify-ab.ts <other tree>')
const otherGuard = (await import(resolve(other, 'src/guard/index.ts'))) as { createGuard: typeof CreateGuard }
const algorithms = (process.env.ALGS?.split(',') ?? ALGORITHMS) as BenchAlgorithm[]
const rounds = positiveNumber('ROUNDS', 11)
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1] as number

for (const alg of algorithms) {
  const idp = await startIssuer(alg)
  try {
    const token = await idp.sign(accessTokenClaims(idp.issuer))
    const options = { resource: RESOURCE, authorizationServers: [{ issuer: idp.issuer }], cacheSeconds: 0 }
    const [theirs, ours] = await Promise.all([otherGuard.createGuard(options), createGuard(options)])
    const cases: [string, () => unknown][] = [
      ['raw', rawVerify(alg, idp, token)],
      [other, () => theirs.verifyToken(token)],
      ['this tree', () => ours.verifyToken(token)],
    ]
    for (const [, op] of cases) await timeLoop(op, { seconds: benchSeconds / 4 })
    const runs = cases.map((): number[] => [])
    for (let round = 0; round < rounds; round++) {
      for (const [i, [, op]] of cases.entries())
        runs[i]?.push((await timeLoop(op, { seconds: benchSeconds / rounds })).opsPerCpuSecond)
    }
    const raw = runs[0] as number[]
    for (const [i, [name]] of cases.entries()) {
      const ops = runs[i] as number[]
      const ratios = ops.map((value, round) => value / (raw[round] as number)).sort((a, b) => a - b)
      console.log(
        `${alg} ${name}: ${(1e6 / median(ops)).toFixed(1)} us/op (CPU), ratio to raw ${median(ratios).toFixed(3)}` +
          ` (rounds ${ratios[0]?.toFixed(3)}-${ratios.at(-1)?.toFixed(3)})`,
      )
    }
  } finally {
    await idp.close()
  }
}
