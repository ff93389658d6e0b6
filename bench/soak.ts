/**
 * `npm run soak -- --minutes N` (or `--seconds N`): a mixed load against `gatehouse serve` run as a child
 * process, on loopback only. Each client signs in (sign-in and consent pages), calls tools, reconnects,
 * refreshes, and every other round has its grant revoked and checks the refresh is then refused. Every
 * `--interval` seconds it prints the requests, the unexpected errors, the gateway's heap after a full GC
 * (through the inspector), its RSS, open file descriptors and child processes.
 * Exits 1 on any unexpected error, an error in the gateway's log, a child process left once every session
 * is closed, or a heap that has not levelled off (see `levelledOff`).
 *
 * Options: --clients N (6), --upstream stdio|http (stdio: server-everything per session; http: one
 * server-everything in Streamable HTTP mode), --postgres (storage in a fresh schema of
 * GATEHOUSE_TEST_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/test, dropped at the end; SQLite otherwise),
 * --max-heap-growth PERCENT (20), --interval SECONDS.
 */
import { randomBytes } from 'node:crypto'
import { readdir, readFile, rm } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import pg from 'pg'
import { tempDir } from '../test/support/embedded-gateway.ts'
import { connectClient, startEverythingHttp, transportOf } from '../test/support/gateway-harness.ts'
import {
  createUsers,
  refresh,
  revoke,
  type ServeChild,
  signIn,
  startServeChild,
} from '../test/support/serve-child.ts'

const MIB = 1024 * 1024
/** Below this the heap is noise (a cache filling up, a GC's timing), whatever the percentage. */
const HEAP_NOISE_BYTES = 4 * MIB

interface Sample {
  seconds: number
  requests: number
  errors: number
  heapUsed: number
  rss: number
  fds: number
  children: number
}

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    seconds: { type: 'string' },
    clients: { type: 'string', default: '6' },
    upstream: { type: 'string', default: 'stdio' },
    postgres: { type: 'boolean', default: false },
    'max-heap-growth': { type: 'string', default: '20' },
    interval: { type: 'string' },
  },
  strict: true,
})

function positive(name: string, value: string | undefined): number {
  const number = Number(value)
  if (!Number.isFinite(number) || number <= 0)
    throw new Error(`--${name} must be a positive number, not ${value}`)
  return number
}

const durationSeconds = values.minutes
  ? positive('minutes', values.minutes) * 60
  : positive('seconds', values.seconds ?? '60')
const clients = positive('clients', values.clients)
const maxGrowth = positive('max-heap-growth', values['max-heap-growth']) / 100
const intervalSeconds = positive('interval', values.interval ?? String(durationSeconds >= 600 ? 30 : 5))
if (values.upstream !== 'stdio' && values.upstream !== 'http')
  throw new Error(`--upstream must be stdio or http, not ${values.upstream}`)

/** Every HTTP request of the load (sign-in pages, token endpoint, MCP) goes through the global fetch. */
let requests = 0
const realFetch = globalThis.fetch
globalThis.fetch = (input, init) => {
  requests++
  return realFetch(input, init)
}

const unexpected: string[] = []
const fail = (what: string, error: unknown) => {
  unexpected.push(`${what}: ${error instanceof Error ? error.message : String(error)}`)
}

/** The Chrome DevTools protocol over the inspector's WebSocket: a full GC, then the gateway's memory. */
async function openInspector(url: string) {
  const socket = new WebSocket(url)
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve, { once: true })
    socket.addEventListener('error', () => reject(new Error(`inspector ${url} unreachable`)), { once: true })
  })
  let id = 0
  const pending = new Map<number, (result: unknown) => void>()
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown }
    if (message.id !== undefined) pending.get(message.id)?.(message.result)
  })
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve) => {
      pending.set(++id, resolve)
      socket.send(JSON.stringify({ id, method, params }))
    })
  return {
    async memoryAfterGc(): Promise<{ heapUsed: number; rss: number }> {
      await call('HeapProfiler.collectGarbage')
      const answer = (await call('Runtime.evaluate', {
        expression: 'JSON.stringify(process.memoryUsage())',
        returnByValue: true,
      })) as { result: { value: string } }
      return JSON.parse(answer.result.value)
    },
    close: () => socket.close(),
  }
}

/** Processes whose parent is `pid` (the stdio MCP servers). */
async function childrenOf(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
  return text.split(' ').filter(Boolean).length
}

async function connect(serve: ServeChild, accessToken: string): Promise<Client> {
  return connectClient(serve.resource, accessToken)
}

/** Ends the session at the gateway (DELETE, which stops its stdio child), then the client. */
async function disconnect(client: Client): Promise<void> {
  await transportOf(client).terminateSession()
  await client.close()
}

async function callTools(client: Client, round: number): Promise<void> {
  const { tools } = await client.listTools()
  if (!tools.some((tool) => tool.name === 'echo')) throw new Error('tools/list without echo')
  for (let i = 0; i < 3; i++) {
    const message = `round ${round} call ${i}`
    const { content } = await client.callTool({ name: 'echo', arguments: { message } })
    const text = (content as { text?: string }[])[0]?.text
    if (text !== `Echo: ${message}`) throw new Error(`echo answered ${JSON.stringify(content)}`)
  }
  const sum = await client.callTool({ name: 'get-sum', arguments: { a: round, b: 1 } })
  if (!JSON.stringify(sum.content).includes(String(round + 1)))
    throw new Error(`get-sum answered ${JSON.stringify(sum.content)}`)
}

/** One user's rounds until `deadline`: sign in, call, reconnect, refresh, call, and revoke every other round. */
async function client(serve: ServeChild, index: number, deadline: number): Promise<void> {
  for (let round = 0; Date.now() < deadline; round++) {
    try {
      const address = `10.${index}.${(round >> 8) & 255}.${round & 255}`
      const tokens = await signIn(serve.issuer, serve.resource, `soak${index}`, address)
      let session = await connect(serve, tokens.access_token)
      await callTools(session, round)
      await disconnect(session)
      const refreshed = await refresh(serve.issuer, tokens.refresh_token)
      if (refreshed.status !== 200)
        throw new Error(`refresh: ${refreshed.status} ${JSON.stringify(refreshed.body)}`)
      session = await connect(serve, refreshed.body.access_token)
      await callTools(session, round)
      await disconnect(session)
      if (round % 2 === 1) {
        const revoked = await revoke(serve.issuer, refreshed.body.refresh_token)
        if (revoked !== 200) throw new Error(`revocation: ${revoked}`)
        const after = await refresh(serve.issuer, refreshed.body.refresh_token)
        if (after.status !== 400 || after.body.error !== 'invalid_grant')
          throw new Error(`refresh after revocation: ${after.status} ${JSON.stringify(after.body)}`)
      }
    } catch (error) {
      fail(`client ${index} round ${round}`, error)
      await sleep(500)
    }
  }
}

/**
 * The heap has levelled off when, past the first fifth (warm-up: caches, JIT, pools), the highest sample of
 * the last third is at most `maxGrowth` above the highest of the first third, or within HEAP_NOISE_BYTES.
 */
export function levelledOff(heaps: number[], growth: number): { ok: boolean; first: number; last: number } {
  const steady = heaps.slice(Math.max(1, Math.floor(heaps.length / 5)))
  const third = Math.max(1, Math.floor(steady.length / 3))
  const first = Math.max(...steady.slice(0, third))
  const last = Math.max(...steady.slice(-third))
  return { ok: last <= first * (1 + growth) || last - first <= HEAP_NOISE_BYTES, first, last }
}

const mib = (bytes: number) => (bytes / MIB).toFixed(1)

async function main(): Promise<number> {
  const dataDir = await tempDir('soak')
  const schema = `gh_soak_${randomBytes(6).toString('hex')}`
  const postgresBase = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  const storageUrl = values.postgres ? `${postgresBase}?schema=${schema}` : undefined
  const upstream = values.upstream === 'http' ? await startEverythingHttp() : undefined
  const options = { dataDir, storageUrl, upstream: upstream?.url, inspect: true }
  await createUsers(
    options,
    Array.from({ length: clients }, (_, i) => `soak${i}`),
  )
  const serve = await startServeChild(options)
  const pid = serve.child.pid ?? 0
  const inspector = await openInspector(serve.inspector ?? '')
  const started = Date.now()
  const samples: Sample[] = []
  const sample = async () => {
    const memory = await inspector.memoryAfterGc()
    const entry: Sample = {
      seconds: Math.round((Date.now() - started) / 1000),
      requests,
      errors: unexpected.length + serve.logErrors.length,
      heapUsed: memory.heapUsed,
      rss: memory.rss,
      fds: (await readdir(`/proc/${pid}/fd`)).length,
      children: await childrenOf(pid),
    }
    samples.push(entry)
    console.log(
      `${String(entry.seconds).padStart(5)} s  requests ${String(entry.requests).padStart(7)}  errors ${entry.errors}  ` +
        `heap ${mib(entry.heapUsed)} MiB  rss ${mib(entry.rss)} MiB  fds ${entry.fds}  children ${entry.children}`,
    )
  }
  console.log(
    `soak: ${durationSeconds} s, ${clients} clients, ${values.upstream} upstream, ${values.postgres ? 'PostgreSQL' : 'SQLite'}, gateway pid ${pid}`,
  )
  await sample()
  const deadline = started + durationSeconds * 1000
  const load = Promise.all(Array.from({ length: clients }, (_, i) => client(serve, i, deadline)))
  const ticker = setInterval(
    () => void sample().catch((error) => fail('sample', error)),
    intervalSeconds * 1000,
  )
  await load
  clearInterval(ticker)

  // Every session was terminated: the stdio children must all be gone (they get a moment to exit).
  let children = await childrenOf(pid)
  for (let wait = 0; children > 0 && wait < 50; wait++)
    children = await sleep(100).then(() => childrenOf(pid))
  await sample()
  inspector.close()
  await serve.stop()
  await upstream?.close()
  await rm(dataDir, { recursive: true, force: true })
  if (storageUrl) {
    const db = new pg.Client({ connectionString: postgresBase })
    await db.connect()
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await db.end()
  }

  const heap = levelledOff(
    samples.map((s) => s.heapUsed),
    maxGrowth,
  )
  const last = samples.at(-1) as Sample
  const rate = (last.requests / durationSeconds).toFixed(1)
  console.log(
    `total: ${last.requests} requests (${rate}/s), ${unexpected.length} unexpected errors, ${serve.logErrors.length} errors logged, ` +
      `heap first third max ${mib(heap.first)} MiB, last third max ${mib(heap.last)} MiB, children left ${children}, ` +
      `gateway exit ${serve.child.exitCode ?? serve.child.signalCode}`,
  )
  for (const message of unexpected.slice(0, 10)) console.log(`unexpected: ${message}`)
  for (const line of serve.logErrors.slice(0, 10)) console.log(`logged: ${line}`)
  const failures = [
    unexpected.length > 0 && 'unexpected errors',
    serve.logErrors.length > 0 && 'errors in the gateway log',
    !heap.ok && `the heap grew more than ${values['max-heap-growth']}% (not levelled off)`,
    children > 0 && `${children} child processes left after every session ended`,
    serve.child.exitCode !== 0 && 'the gateway did not exit 0 on SIGTERM',
  ].filter(Boolean)
  console.log(failures.length ? `FAIL: ${failures.join(', ')}` : 'PASS')
  return failures.length ? 1 : 0
}

if (import.meta.main) process.exitCode = await main()
