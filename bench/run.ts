/**
 * `npm run bench`: token verification, HTTP throughput, the gateway, cache memory and the authorization
 * server, each next to the baselines it is judged against, all measured in this run (alternated rounds, CPU
 * time, medians). Prints each figure with its ratio and writes `results/<date>.json`, `.md` and `.svg`.
 *
 *   --quick      every section, briefly: proves the benchmarks still run (CI); its figures mean nothing
 *   --out DIR    where the results go (default bench/results)
 *
 * BENCH_SECONDS (default 2) sets the measured time per case.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import type { Target } from './chart.ts'

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } },
})
if (args.quick) {
  // Set before the benchmark modules read them.
  process.env.BENCH_SECONDS ??= '0.1'
  process.env.BENCH_CONNECTIONS ??= '4'
  process.env.BENCH_MEMORY_TOKENS ??= '500'
  process.env.BENCH_SSE_STREAMS ??= '200'
}
const outDir = resolve(args.out ?? new URL('./results', import.meta.url).pathname)

const { BARE, benchAuthServer } = await import('./auth-server.ts')
const { BARE_ROUTE, benchGateway, benchGatewaySteps, DIRECT_ROUTE } = await import('./gateway.ts')
const { benchHttp, connections } = await import('./http.ts')
const { benchSeconds, pairedRatio } = await import('./measure.ts')
const { benchMemory } = await import('./memory.ts')
const { benchSseMemory } = await import('./memory-sse.ts')
const { benchVerify, FAST_JWT_CACHE_CASE, GUARD_COLD_CASE, GUARD_WARM_CASES, RAW_CASE } = await import(
  './verify.ts'
)
const { chart } = await import('./chart.ts')

const progress = (line: string) => process.stderr.write(`… ${line}\n`)
const started = new Date()
const loadBefore = loadavg()[0] as number

const verify = await benchVerify(progress)
const http = await benchHttp(progress)
const gateway = await benchGateway(connections, progress)
const gatewaySteps = await benchGatewaySteps(progress)
progress(`memory: ${process.env.BENCH_MEMORY_TOKENS ?? '100000'} distinct tokens through the cached guard`)
const memory = await benchMemory()
const sseMemory = await benchSseMemory(progress)
const authServer = await benchAuthServer(progress, {
  seconds: args.quick ? benchSeconds : benchSeconds * 1.5,
  rounds: args.quick ? 1 : 3,
  chains: args.quick ? 1 : 4,
})

const targets: Target[] = []
for (const { alg, cases } of verify) {
  const ops = (name: string) => cases.find((c) => c.name === name)?.measurement.opsPerCpuSecond ?? Number.NaN
  const raw = ops(RAW_CASE)
  targets.push({
    what: `guard cold ${alg}`,
    figure: ops(GUARD_COLD_CASE),
    unit: 'ops/CPU-s',
    baseline: RAW_CASE,
    ratio: ops(GUARD_COLD_CASE) / raw,
    goal: { ratio: 0.85, atLeast: true },
  })
  const fastJwtCache = ops(FAST_JWT_CACHE_CASE)
  for (const name of GUARD_WARM_CASES) {
    targets.push({
      what: `${name.replace(', cache on (same token)', '')} warm ${alg}`,
      figure: ops(name),
      unit: 'ops/CPU-s',
      baseline: Number.isNaN(fastJwtCache)
        ? '1,000,000 ops/CPU-s (fast-jwt not installed)'
        : FAST_JWT_CACHE_CASE,
      ratio: ops(name) / (Number.isNaN(fastJwtCache) ? 1e6 : fastJwtCache),
      goal: { ratio: Number.isNaN(fastJwtCache) ? 1 : 3, atLeast: true },
    })
  }
}
for (const flow of new Set(authServer.map((r) => r.flow))) {
  const bare = authServer.find((r) => r.flow === flow && r.server === BARE)
  for (const r of authServer.filter((r) => r.flow === flow && r.server !== BARE)) {
    targets.push({
      what: `${r.server}: ${flow}`,
      figure: r.opsPerCpuSecond,
      unit: 'ops/CPU-s',
      baseline: BARE,
      ratio: r.opsPerCpuSecond / (bare?.opsPerCpuSecond ?? Number.NaN),
      goal: { ratio: 0.85, atLeast: true },
    })
  }
}

const bare = gateway.find((r) => r.route === BARE_ROUTE)
for (const r of gateway.filter((r) => r.upstream === bare?.upstream && r.route.startsWith('gateway'))) {
  targets.push({
    what: `gateway CPU per request (${r.route})`,
    figure: r.gatewayCpuMicros,
    unit: 'µs/req',
    baseline: BARE_ROUTE,
    ratio: pairedRatio(r.gatewayCpuMicrosByRound, bare?.gatewayCpuMicrosByRound ?? []),
    goal: { ratio: 1.2, atLeast: false },
  })
}
const bareSse = sseMemory.find((r) => r.proxy === 'bare node:http proxy')
for (const r of sseMemory.filter((r) => r.proxy === 'gatehouse serve')) {
  targets.push({
    what: 'memory per idle SSE stream through the gateway',
    figure: r.rssPerStream / 1024,
    unit: 'KiB RSS',
    baseline: 'bare node:http proxy',
    ratio: r.rssPerStream / (bareSse?.rssPerStream ?? Number.NaN),
    goal: { ratio: 1, atLeast: false },
  })
}

const machine = {
  node: process.versions.node,
  openssl: process.versions.openssl,
  cpus: cpus().length,
  cpu: cpus()[0]?.model ?? 'unknown CPU',
  loadBefore,
  loadAfter: loadavg()[0] as number,
}
const results = {
  startedAt: started.toISOString(),
  quick: args.quick,
  benchSeconds,
  connections,
  seconds: Math.round((Date.now() - started.getTime()) / 1000),
  machine,
  targets,
  verify,
  http,
  gateway,
  gatewaySteps,
  memory,
  sseMemory,
  authServer,
}

const report = [
  `# Gatehouse benchmark, ${started.toISOString()}${args.quick ? ' (--quick: the figures mean nothing)' : ''}`,
  '',
  `Node ${machine.node}, OpenSSL ${machine.openssl}, ${machine.cpus} × ${machine.cpu}. ` +
    `BENCH_SECONDS=${benchSeconds}, ${connections} HTTP connections. Load average ${loadBefore.toFixed(2)} at the ` +
    `start, ${machine.loadAfter.toFixed(2)} at the end; run took ${results.seconds} s. Figures are medians of ` +
    'alternated rounds, in CPU time.',
  '',
  '## Targets',
  '',
  table(
    ['what', 'figure', 'baseline', 'ratio', 'goal', 'met'],
    targets.map((t) => [
      t.what,
      `${integer(t.figure)} ${t.unit}`,
      t.baseline,
      `${t.ratio.toFixed(2)}×`,
      `${t.goal.atLeast ? '≥' : '≤'} ${t.goal.ratio}×`,
      met(t),
    ]),
  ),
  '',
  '## Token verification (one token, sequential)',
  '',
  table(
    ['alg (token)', 'measurement', 'ops/s', 'ops/CPU-s', 'CPU µs/op', 'vs raw (CPU)'],
    verify.flatMap(({ alg, tokenBytes, cases }) => {
      const raw = cases.find((c) => c.name === RAW_CASE)?.measurement.opsPerCpuSecond ?? Number.NaN
      return cases.map(({ name, measurement: m }) => [
        `${alg} (${tokenBytes} B)`,
        name,
        integer(m.opsPerSecond),
        integer(m.opsPerCpuSecond),
        (1e6 / m.opsPerCpuSecond).toFixed(2),
        `${(m.opsPerCpuSecond / raw).toFixed(2)}×`,
      ])
    }),
  ),
  '',
  '## HTTP: 44-byte JSON-RPC answer, keep-alive load generator in a child process',
  '',
  table(
    ['server mode', 'req/s', 'p50 ms', 'p99 ms', 'server CPU µs/req', 'vs baseline (CPU)'],
    http.map(({ mode, load, serverCpuMicros }) => [
      mode,
      integer(load.requests / load.seconds),
      load.p50Ms.toFixed(2),
      load.p99Ms.toFixed(2),
      serverCpuMicros.toFixed(1),
      `${(serverCpuMicros / (http[0]?.serverCpuMicros ?? Number.NaN)).toFixed(2)}×`,
    ]),
  ),
  '',
  '## Gateway: an MCP tools/call straight to the upstream and through the gateway, same load generator',
  '',
  'Each row is its median round by throughput; "gateway CPU vs bare proxy" is the median of the ratios taken ' +
    'round by round (the two routes ran back to back in each round).',
  '',
  table(
    [
      'upstream',
      'route',
      'req/s',
      'p50 ms',
      'p99 ms',
      'gateway CPU µs/req',
      'upstream CPU µs/req',
      'total vs direct',
      'gateway CPU vs bare proxy',
    ],
    gateway.map(({ upstream, route, load, gatewayCpuMicros, upstreamCpuMicros, gatewayCpuMicrosByRound }) => {
      const direct = gateway.find((r) => r.upstream === upstream && r.route === DIRECT_ROUTE)
      const total = gatewayCpuMicros + upstreamCpuMicros
      const directTotal = direct ? direct.gatewayCpuMicros + direct.upstreamCpuMicros : Number.NaN
      const bareProxy = gateway.find((r) => r.upstream === upstream && r.route === BARE_ROUTE)
      return [
        upstream,
        route,
        integer(load.requests / load.seconds),
        load.p50Ms.toFixed(2),
        load.p99Ms.toFixed(2),
        gatewayCpuMicros.toFixed(1),
        upstreamCpuMicros.toFixed(1),
        direct ? `${(total / directTotal).toFixed(2)}×` : '',
        bareProxy && route !== DIRECT_ROUTE
          ? `${pairedRatio(gatewayCpuMicrosByRound, bareProxy.gatewayCpuMicrosByRound).toFixed(2)}×`
          : '',
      ]
    }),
  ),
  '',
  '## Gateway steps, timed alone (one token, sequential)',
  '',
  table(
    ['step', 'CPU µs/op'],
    gatewaySteps.map(({ step, cpuMicros }) => [step, cpuMicros.toFixed(1)]),
  ),
  '',
  `## Memory: distinct tokens through one guard (cacheMaxEntries ${integer(memory.cacheMaxEntries)}), after a full GC`,
  '',
  table(
    ['tokens verified', 'RSS MiB', 'heapTotal MiB', 'heapUsed MiB'],
    memory.snapshots.map(({ verified, rss, heapTotal, heapUsed }) => [
      integer(verified),
      mib(rss),
      mib(heapTotal),
      mib(heapUsed),
    ]),
  ),
  '',
  `## Memory per idle SSE stream, ${integer(sseMemory[0]?.streams ?? 0)} streams, each proxy alone in a child process`,
  '',
  table(
    ['proxy', 'KiB RSS per stream', 'KiB heap per stream'],
    sseMemory.map(({ proxy, rssPerStream, heapPerStream }) => [
      proxy,
      (rssPerStream / 1024).toFixed(1),
      (heapPerStream / 1024).toFixed(1),
    ]),
  ),
  '',
  '## Authorization server against bare oidc-provider (server CPU; the client is another process)',
  '',
  table(
    ['flow', 'server', 'ops/s', 'ops/CPU-s', 'CPU µs/op', 'SQL statements/op', 'vs bare (CPU)'],
    authServer.map((r) => {
      const bare = authServer.find((b) => b.flow === r.flow && b.server === BARE)
      return [
        r.flow,
        r.server,
        integer(r.opsPerSecond),
        integer(r.opsPerCpuSecond),
        r.cpuMicros.toFixed(0),
        r.statements.toFixed(1),
        `${(r.opsPerCpuSecond / (bare?.opsPerCpuSecond ?? Number.NaN)).toFixed(2)}×`,
      ]
    }),
  ),
  '',
].join('\n')

process.stdout.write(report)
const stem = join(outDir, started.toISOString().slice(0, 10) + (args.quick ? '-quick' : ''))
await mkdir(outDir, { recursive: true })
await writeFile(`${stem}.json`, `${JSON.stringify(results, null, 2)}\n`)
await writeFile(`${stem}.md`, report)
await writeFile(`${stem}.svg`, chart(targets, started.toISOString()))
progress(`written to ${stem}.{json,md,svg}`)
// Keep-alive sockets and child processes of the sections must not hold the run open.
process.exit(0)

function met(t: Target): string {
  const ok = t.goal.atLeast ? t.ratio >= t.goal.ratio : t.ratio <= t.goal.ratio
  if (Number.isNaN(t.ratio)) return 'n/a'
  return ok ? 'met' : `missed by ${Math.abs(t.goal.ratio - t.ratio).toFixed(2)}×`
}

function table(header: string[], rows: string[][]): string {
  const align = header.map((_, i) => (i < 2 ? '---' : '---:'))
  return [header, align, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

function integer(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a'
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1)
}
