/**
 * Issue 14's experiment: `gatehouse serve --dev` (embedded authorization server, server-everything over
 * stdio) receives CONNECTIONS requests without credentials, each declaring a 1 MiB body and sending one
 * byte less, so a gateway that reads bodies before authenticating holds them all. Prints the serve
 * process's RSS before and at its peak, and how the requests ended.
 * Run: ./node_modules/.bin/node bench/pre-auth-memory.ts  (CONNECTIONS, default 300; ANONYMOUS=1 turns
 * anonymous discovery on, so bodies without a token are read, within the anonymous limit)
 */
import { readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { startDevServe } from '../test/support/dev-serve.ts'

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 300)
const BODY = 1_048_576
const MiB = 1_048_576

const rssOf = async (pid: number): Promise<number> => {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024
}

const serve = await startDevServe({
  env: process.env.ANONYMOUS === '1' ? { GATEHOUSE_ALLOW_ANONYMOUS_MCP_DISCOVERY: 'true' } : {},
})
const pid = serve.child.pid as number
const url = new URL(serve.resource)
await sleep(1000)
const before = await rssOf(pid)
let peak = before
const outcomes = new Map<string, number>()
const note = (what: string) => outcomes.set(what, (outcomes.get(what) ?? 0) + 1)

function attack(): Promise<void> {
  return new Promise((resolve) => {
    const socket: Socket = connect(Number(url.port), url.hostname)
    let answer = ''
    socket.on('data', (chunk) => {
      answer ||= chunk.toString().split('\r\n', 1)[0] as string
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      note(answer || 'closed without an answer')
      resolve()
    })
    socket.write(
      `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\ncontent-type: application/json\r\n` +
        `accept: application/json, text/event-stream\r\ncontent-length: ${BODY}\r\n\r\n`,
    )
    socket.write(Buffer.alloc(BODY - 1, 0x20))
    // Held open, the last byte never sent; ended after the measurement.
    setTimeout(() => socket.destroy(), 8000).unref()
  })
}

const done = Promise.all(Array.from({ length: CONNECTIONS }, attack))
const sampler = setInterval(async () => {
  peak = Math.max(peak, await rssOf(pid))
}, 100)
await done
clearInterval(sampler)
console.log(
  JSON.stringify({
    connections: CONNECTIONS,
    anonymousDiscovery: process.env.ANONYMOUS === '1',
    rssBeforeMiB: Math.round(before / MiB),
    rssPeakMiB: Math.round(peak / MiB),
    outcomes: Object.fromEntries(outcomes),
  }),
)
await serve.stop()
