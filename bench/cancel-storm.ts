/**
 * The cancellation storm of issue 14: PENDING `tools/call`s that the child never answers, then three waves of
 * CANCELS `notifications/cancelled` in batches of BATCH (the gateway's `limits.max_batch_messages`; unset
 * keeps the gateway's default, and the key out of the file for a gateway that does not know it; CHUNK then
 * sets the batch size), while
 * /healthz is probed every 10 ms. Prints the probe's median and worst latency before and during the storm.
 * `node bench/cancel-storm.ts` (PENDING=10000 CANCELS=13000 BATCH=…).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import {
  ALL_SCOPES,
  INITIALIZE,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../test/support/gateway-harness.ts'

const PENDING = Number(process.env.PENDING ?? 10_000)
const CANCELS = Number(process.env.CANCELS ?? 13_000)
const BATCH = process.env.BATCH === undefined ? undefined : Number(process.env.BATCH)
/** Messages per POST: the limit, or CHUNK for a gateway that has none. */
const CHUNK = Number(process.env.CHUNK ?? BATCH ?? 100)
const FRAGILE_CHILD = new URL('../test/support/gateway-stdio-child.ts', import.meta.url).pathname

const idp = await startIdp()
const gateway = await startTestGateway(
  idp,
  { command: [NODE, FRAGILE_CHILD] },
  {
    limits: {
      upstream_timeout_ms: 600_000,
      max_body_bytes: 8_388_608,
      ...(BATCH === undefined ? {} : { max_batch_messages: BATCH }),
    },
    sessions: { max_sessions_per_user: 10 },
  },
)
const token = await tokenFor(idp, 'alice', ALL_SCOPES)
const session = (
  await postRpc(gateway.resource, INITIALIZE, { authorization: `Bearer ${token}` })
).headers.get('mcp-session-id') as string
const headers = {
  authorization: `Bearer ${token}`,
  'mcp-session-id': session,
  'mcp-protocol-version': '2025-06-18',
  accept: 'application/json',
}
const healthz = new URL('/healthz', gateway.resource)

async function probe(until: Promise<unknown>): Promise<number[]> {
  const times: number[] = []
  let done = false
  void until.finally(() => {
    done = true
  })
  while (!done) {
    const started = performance.now()
    await (await fetch(healthz)).arrayBuffer()
    times.push(performance.now() - started)
    await sleep(10)
  }
  return times.sort((a, b) => a - b)
}

const chunks = <T>(items: T[]): T[][] =>
  Array.from({ length: Math.ceil(items.length / CHUNK) }, (_, i) => items.slice(i * CHUNK, (i + 1) * CHUNK))

// The hanging calls: their POSTs stay open until cancelled.
const ids = Array.from({ length: PENDING }, (_, i) => i + 1)
const hanging = chunks(ids).map((part) =>
  postRpc(
    gateway.resource,
    part.map((id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'hang', arguments: {} } })),
    headers,
  ),
)
await sleep(3000)
const idle = await probe(sleep(1000))

const storm = (async () => {
  for (let wave = 0; wave < 3; wave++) {
    const cancels = Array.from({ length: CANCELS }, (_, i) => ({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: PENDING + 1 + wave * CANCELS + i },
    }))
    const started = performance.now()
    const statuses = await Promise.all(
      chunks(cancels).map(async (part) => (await postRpc(gateway.resource, part, headers)).status),
    )
    process.stderr.write(
      `wave ${wave + 1}: ${statuses.length} POSTs, ${Math.round(performance.now() - started)} ms, statuses ${[...new Set(statuses)]}\n`,
    )
  }
})()
const during = await probe(storm)
const pick = (t: number[], q: number) =>
  (t[Math.min(t.length - 1, Math.floor(q * t.length))] ?? NaN).toFixed(1)
console.log(
  `pending ${PENDING}, 3 × ${CANCELS} cancellations in batches of ${CHUNK}: /healthz idle median ${pick(idle, 0.5)} ms, ` +
    `during median ${pick(during, 0.5)} ms, worst ${pick(during, 1)} ms (${during.length} probes)`,
)
void hanging
await gateway.close()
await idp.close()
process.exit(0)
