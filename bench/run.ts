/**
 * `npm run bench`: token verification, HTTP throughput, the gateway against a direct connection and cache
 * memory, each next to the baselines it is judged against, all measured in this run. BENCH_SECONDS (default 2) sets the measured time per case.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import {
  BARE_ROUTE,
  benchGateway,
  benchGatewaySteps,
  DIRECT_ROUTE,
  type GatewayCost,
  type GatewayResult,
} from './gateway.ts'
import { benchHttp, connections, type HttpResult } from './http.ts'
import { benchSeconds } from './measure.ts'
import { benchMemory, type MemoryResult } from './memory.ts'
import { benchSseMemory, type SseMemoryResult } from './memory-sse.ts'
import { benchVerify, RAW_CASE, type VerifyResult } from './verify.ts'

const RESULTS = new URL('./results/latest.md', import.meta.url)

const progress = (line: string) => process.stderr.write(`… ${line}\n`)
const started = new Date()
const loadBefore = loadavg()[0] as number
const verifyResults = await benchVerify(progress)
const httpResults = await benchHttp(progress)
const gatewayResults = await benchGateway(connections, progress)
const gatewaySteps = await benchGatewaySteps(progress)
progress(`memory: ${process.env.BENCH_MEMORY_TOKENS ?? '100000'} distinct tokens through the cached guard`)
const memoryResult = await benchMemory()
const sseMemoryResults = await benchSseMemory(progress)

const report = [
  `# Gatehouse guard and gateway benchmark, ${started.toISOString()}`,
  '',
  `Node ${process.versions.node}, OpenSSL ${process.versions.openssl}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}. ` +
    `BENCH_SECONDS=${benchSeconds} (warm-up ${benchSeconds / 4} s), ${connections} HTTP connections. ` +
    `Load average ${loadBefore.toFixed(2)} at the start, ${(loadavg()[0] as number).toFixed(2)} at the end; ` +
    `run took ${Math.round((Date.now() - started.getTime()) / 1000)} s.`,
  '',
  '## Token verification (one token, sequential)',
  '',
  verifyTable(verifyResults),
  '',
  '## HTTP: 44-byte JSON-RPC answer, keep-alive load generator in a child process',
  '',
  httpTable(httpResults),
  '',
  '## Gateway: an MCP tools/call straight to the upstream and through `gatehouse serve`, same load generator',
  '',
  gatewayTable(gatewayResults),
  '',
  '## Gateway steps, timed alone (one token, sequential)',
  '',
  gatewayStepsTable(gatewaySteps),
  '',
  '## Memory: distinct ES256 tokens through one guard with its default cache',
  '',
  memoryTable(memoryResult),
  '',
  '## Memory per idle SSE stream, each proxy alone in a child process',
  '',
  sseMemoryTable(sseMemoryResults),
  '',
].join('\n')

process.stdout.write(report)
await mkdir(new URL('.', RESULTS), { recursive: true })
await writeFile(RESULTS, report)
progress(`written to ${RESULTS.pathname}`)

function verifyTable(results: VerifyResult[]): string {
  const rows = results.flatMap(({ alg, tokenBytes, cases }) => {
    const raw = cases.find((c) => c.name === RAW_CASE)?.measurement.opsPerCpuSecond ?? NaN
    return cases.map(({ name, measurement: m }) => [
      `${alg} (${tokenBytes} B)`,
      name,
      integer(m.opsPerSecond),
      integer(m.opsPerCpuSecond),
      (1e6 / m.opsPerCpuSecond).toFixed(1),
      `${Math.round((100 * m.opsPerCpuSecond) / raw)} %`,
    ])
  })
  return table(['alg (token)', 'measurement', 'ops/s', 'ops/CPU-s', 'CPU µs/op', 'vs raw (CPU)'], rows)
}

function httpTable(results: HttpResult[]): string {
  const rows = results.map(({ mode, load, serverCpuMicros, serverBusy }) => [
    mode,
    integer(load.requests / load.seconds),
    load.p50Ms.toFixed(2),
    load.p99Ms.toFixed(2),
    serverCpuMicros.toFixed(1),
    `${Math.round(serverBusy * 100)} %`,
  ])
  return table(['server mode', 'req/s', 'p50 ms', 'p99 ms', 'server CPU µs/req', 'server busy'], rows)
}

function gatewayTable(results: GatewayResult[]): string {
  const rows = results.map(({ upstream, route, load, gatewayCpuMicros, upstreamCpuMicros }) => {
    const direct = results.find((r) => r.upstream === upstream && r.route === DIRECT_ROUTE)
    const bare = results.find((r) => r.upstream === upstream && r.route === BARE_ROUTE)
    const total = gatewayCpuMicros + upstreamCpuMicros
    return [
      upstream,
      route,
      integer(load.requests / load.seconds),
      load.p50Ms.toFixed(2),
      load.p99Ms.toFixed(2),
      gatewayCpuMicros.toFixed(1),
      upstreamCpuMicros.toFixed(1),
      total.toFixed(1),
      direct && route !== DIRECT_ROUTE
        ? `+${(total - direct.gatewayCpuMicros - direct.upstreamCpuMicros).toFixed(1)}`
        : '',
      bare && route !== DIRECT_ROUTE ? `${(gatewayCpuMicros / bare.gatewayCpuMicros).toFixed(2)}×` : '',
    ]
  })
  return (
    'Gateway CPU is this process (the gateway runs in it); upstream CPU is the upstream process, read from ' +
    '/proc (clock-tick resolution). server-everything over stdio has no direct route: it speaks no HTTP.\n\n' +
    table(
      [
        'upstream',
        'route',
        'req/s',
        'p50 ms',
        'p99 ms',
        'gateway CPU µs/req',
        'upstream CPU µs/req',
        'total CPU µs/req',
        'vs direct µs/req',
        'gateway CPU vs bare proxy',
      ],
      rows,
    )
  )
}

function gatewayStepsTable(steps: GatewayCost[]): string {
  return table(
    ['step', 'CPU µs/op'],
    steps.map(({ step, cpuMicros }) => [step, cpuMicros.toFixed(1)]),
  )
}

function memoryTable({ cacheMaxEntries, snapshots }: MemoryResult): string {
  const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1)
  const rows = snapshots.map(({ verified, rss, heapTotal, heapUsed }) => [
    integer(verified),
    mb(rss),
    mb(heapTotal),
    mb(heapUsed),
  ])
  return `cacheMaxEntries ${integer(cacheMaxEntries)}; readings after a full GC.\n\n${table(
    ['tokens verified', 'RSS MiB', 'heapTotal MiB', 'heapUsed MiB'],
    rows,
  )}`
}

function sseMemoryTable(results: SseMemoryResult[]): string {
  const kib = (bytes: number) => (bytes / 1024).toFixed(1)
  return `${integer(results[0]?.streams ?? 0)} streams; growth over the reading before they opened, after a full GC.\n\n${table(
    ['proxy', 'KiB RSS per stream', 'KiB heap per stream'],
    results.map(({ proxy, rssPerStream, heapPerStream }) => [proxy, kib(rssPerStream), kib(heapPerStream)]),
  )}`
}

function table(header: string[], rows: string[][]): string {
  const align = header.map((_, i) =>
    i === 0 || (i === 1 && (header[1] === 'measurement' || header[1] === 'route')) ? '---' : '---:',
  )
  return [header, align, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

function integer(value: number): string {
  return Math.round(value).toLocaleString('en-US')
}
