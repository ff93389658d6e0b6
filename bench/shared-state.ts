/**
 * What `shared_state` costs: one `gatehouse serve` with the embedded authorization server in front of an
 * SDK-built HTTP upstream, first without Redis, then with it, the same requests each time. Prints the Redis
 * commands each kind of request sent (from INFO commandstats of a Redis server this script starts, so that
 * nothing else counts) and the median and p99 latency of a tool call in a session, both ways.
 *
 *   node bench/shared-state.ts [--calls 400]
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { createClient } from '@redis/client'
import { tempDir } from '../test/support/embedded-gateway.ts'
import { connectClient, freePort, INITIALIZE, postRpc } from '../test/support/gateway-harness.ts'
import { startSdkHttpUpstream } from '../test/support/sdk-http-upstream.ts'
import { createUsers, refresh, signIn, startServeChild } from '../test/support/serve-child.ts'

const { values } = parseArgs({ options: { calls: { type: 'string', default: '400' } } })
const CALLS = Number(values.calls)
const port = await freePort()
const redisDir = await tempDir('bench-redis')
const server = spawn(
  'redis-server',
  ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir],
  { stdio: 'ignore' },
)
const redisUrl = `redis://127.0.0.1:${port}/0`
const prefix = 'bench:'
const redis = createClient({ url: redisUrl })
for (let attempt = 0; ; attempt++) {
  try {
    await redis.connect()
    break
  } catch (error) {
    if (attempt > 50) throw error
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
/** Calls per command since the server started. */
async function commandCalls(): Promise<Map<string, number>> {
  const info = await redis.info('commandstats')
  const calls = new Map<string, number>()
  for (const match of info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm))
    calls.set(match[1] as string, Number(match[2]))
  return calls
}
async function commandsDuring(work: () => Promise<unknown>): Promise<string> {
  const before = await commandCalls()
  await work()
  const after = await commandCalls()
  const sent: string[] = []
  for (const [name, count] of after) {
    const delta = count - (before.get(name) ?? 0) - (name === 'info' ? 1 : 0)
    if (delta > 0) sent.push(`${name} ${delta}`)
  }
  return sent.join(', ') || 'none'
}

const upstream = await startSdkHttpUpstream()
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0

for (const shared of [false, true]) {
  const dataDir = await tempDir('bench-shared')
  const options = {
    dataDir,
    upstream: upstream.url,
    settings: shared ? { shared_state: { redis_url: redisUrl, key_prefix: prefix } } : {},
  }
  await createUsers(options, ['bench'])
  const serve = await startServeChild(options)
  try {
    const tokens = await signIn(serve.issuer, serve.resource, 'bench', '10.50.0.1')
    const auth = { authorization: `Bearer ${tokens.access_token}`, 'mcp-protocol-version': '2025-06-18' }
    const client = await connectClient(serve.resource, tokens.access_token)
    const call = () => client.callTool({ name: 'echo', arguments: { message: 'bench' } })
    for (let i = 0; i < 50; i++) await call()
    const durations: number[] = []
    for (let i = 0; i < CALLS; i++) {
      const started = performance.now()
      await call()
      durations.push(performance.now() - started)
    }
    durations.sort((a, b) => a - b)
    const label = shared ? 'with Redis' : 'in memory '
    console.log(
      `${label}: tools/call in a session, ${CALLS} calls: median ${percentile(durations, 0.5).toFixed(2)} ms, p99 ${percentile(durations, 0.99).toFixed(2)} ms`,
    )
    if (shared) {
      console.log(`  Redis commands for 1 tools/call in a session: ${await commandsDuring(call)}`)
      console.log(
        `  Redis commands for 1 initialize (a new session): ${await commandsDuring(async () => {
          const answer = await postRpc(serve.resource, INITIALIZE, auth)
          await answer.arrayBuffer()
        })}`,
      )
      console.log(
        `  Redis commands for 1 refresh at /token: ${await commandsDuring(() => refresh(serve.issuer, tokens.refresh_token))}`,
      )
    }
    await client.close()
    if (shared) {
      // One round trip alone: the session check's script on a key that does not exist, from this process.
      const trips: number[] = []
      for (let i = 0; i < 2000; i++) {
        const started = performance.now()
        await redis.eval("return redis.call('GET', KEYS[1])", { keys: [`${prefix}session:none`] })
        trips.push(performance.now() - started)
      }
      trips.sort((a, b) => a - b)
      console.log(
        `  one Redis round trip (EVAL, loopback, 2000 in a row): median ${percentile(trips, 0.5).toFixed(3)} ms, p99 ${percentile(trips, 0.99).toFixed(3)} ms`,
      )
    }
  } finally {
    await serve.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
await redis.close()
server.kill('SIGKILL')
await once(server, 'exit')
await rm(redisDir, { recursive: true, force: true })
await upstream.close()
