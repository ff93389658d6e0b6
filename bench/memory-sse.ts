/**
 * Memory per idle SSE stream: BENCH_SSE_STREAMS (default 5,000) GET streams held open through `gatehouse
 * serve`, and through the bare reverse proxies of `bare-proxy.ts`, to an upstream that sends the headers of
 * an event stream, a comment, and then nothing. Each proxy runs alone in a child process; its RSS and heap are read
 * after a full GC before the streams open and once they all are. Run alone: `node bench/memory-sse.ts`.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect, type Socket } from 'node:net'
import { loadGatewayConfig } from '../src/gateway/config.ts'
import { startGateway } from '../src/gateway/server.ts'
import { startNodeProxy, startUndiciProxy } from './bare-proxy.ts'
import { accessTokenClaims, RESOURCE, startIssuer } from './fixtures.ts'
import { positiveNumber } from './measure.ts'

export interface SseMemoryResult {
  proxy: string
  streams: number
  /** Growth per open stream, in bytes, over the proxy's reading before the streams opened. */
  rssPerStream: number
  heapPerStream: number
}

export const SSE_PROXIES = ['bare node:http proxy', 'bare undici Pool proxy', 'gatehouse serve'] as const
type ProxyKind = (typeof SSE_PROXIES)[number]

/** Opened and closed before the first reading, so that code and pools are warm. */
const WARM_UP_STREAMS = 200
const MCP_PATH = '/mcp'

interface Reading {
  rss: number
  heapUsed: number
}

export async function benchSseMemory(onProgress: (line: string) => void): Promise<SseMemoryResult[]> {
  const streams = positiveNumber('BENCH_SSE_STREAMS', 5000)
  const idp = await startIssuer('RS256')
  const upstream = await startChild(['upstream'])
  try {
    const authorization = `Bearer ${await idp.sign(accessTokenClaims(idp.issuer))}`
    const results: SseMemoryResult[] = []
    for (const proxy of SSE_PROXIES) {
      onProgress(`SSE memory: ${streams} idle streams through ${proxy}`)
      const child = await startChild([
        'proxy',
        proxy,
        `http://127.0.0.1:${upstream.port}${MCP_PATH}`,
        idp.issuer,
      ])
      try {
        const warm = await openStreams(child.port, authorization, WARM_UP_STREAMS)
        for (const socket of warm) socket.destroy()
        await settle()
        const before = await reading(child.process)
        const open = await openStreams(child.port, authorization, streams)
        await settle()
        const after = await reading(child.process)
        for (const socket of open) socket.destroy()
        results.push({
          proxy,
          streams,
          rssPerStream: (after.rss - before.rss) / streams,
          heapPerStream: (after.heapUsed - before.heapUsed) / streams,
        })
      } finally {
        await stop(child.process)
      }
    }
    return results
  } finally {
    await stop(upstream.process)
    await idp.close()
  }
}

/** `count` GET streams on their own connections, resolved once each has its response headers. */
async function openStreams(port: number, authorization: string, count: number): Promise<Socket[]> {
  const request = Buffer.from(
    `GET ${MCP_PATH} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\naccept: text/event-stream\r\n` +
      `mcp-protocol-version: 2025-06-18\r\nauthorization: ${authorization}\r\n\r\n`,
  )
  const sockets: Socket[] = []
  // In batches, so the accept queue of the proxy never overflows.
  for (let opened = 0; opened < count; ) {
    const batch = Math.min(250, count - opened)
    sockets.push(...(await Promise.all(Array.from({ length: batch }, () => openStream(port, request)))))
    opened += batch
  }
  return sockets
}

function openStream(port: number, request: Buffer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request))
    let head = ''
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      if (!head.startsWith('HTTP/1.1 200'))
        reject(new Error(`a stream was answered ${head.split('\r\n')[0]}`))
      else resolve(socket)
    }
    socket.on('data', onData)
    socket.on('error', reject)
  })
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 1000))

function reading(child: ChildProcess): Promise<Reading> {
  return new Promise((resolve) => {
    child.once('message', (message: Reading) => resolve(message))
    child.send('read')
  })
}

async function startChild(args: string[]): Promise<{ process: ChildProcess; port: number }> {
  const child = fork(import.meta.filename, args, { execArgv: ['--expose-gc'], stdio: 'inherit' })
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message: { port: number }) => resolve(message.port))
    child.once('exit', (code) => reject(new Error(`bench/memory-sse.ts ${args[0]} exited ${code}`)))
  })
  child.removeAllListeners('exit')
  return { process: child, port }
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill()
  })
}

/**
 * The upstream: every request gets the headers of an event stream and a comment (a bare proxy sends the
 * headers with the first bytes), then nothing until the client goes.
 */
function serveIdleStreams(): void {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.write(': open\n\n')
  })
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }))
}

async function serveProxy(kind: ProxyKind, upstream: string, issuer: string): Promise<void> {
  let port: number
  if (kind === 'gatehouse serve') {
    const config = await loadGatewayConfig(
      { upstream, port: '0', publicUrl: RESOURCE, logLevel: 'silent' },
      { OAUTH_ISSUER_URL: issuer, GATEHOUSE_UPSTREAM_CREDENTIALS: 'none' },
    )
    const gateway = await startGateway(config)
    port = (gateway.server.address() as AddressInfo).port
  } else {
    port = (await (kind === 'bare node:http proxy' ? startNodeProxy : startUndiciProxy)(new URL(upstream)))
      .port
  }
  process.on('message', () => {
    globalThis.gc?.()
    const { rss, heapUsed } = process.memoryUsage()
    process.send?.({ rss, heapUsed } satisfies Reading)
  })
  process.send?.({ port })
}

if (import.meta.main) {
  const [role, kind, upstream, issuer] = process.argv.slice(2)
  if (role === 'upstream') serveIdleStreams()
  else if (role === 'proxy') await serveProxy(kind as ProxyKind, upstream as string, issuer as string)
  else {
    const progress = (line: string) => process.stderr.write(`… ${line}\n`)
    for (const r of await benchSseMemory(progress))
      console.log(
        `${r.proxy}: ${r.streams} streams, ${(r.rssPerStream / 1024).toFixed(1)} KiB RSS and ` +
          `${(r.heapPerStream / 1024).toFixed(1)} KiB heap per stream`,
      )
    // The issuer's HTTP clients keep sockets alive for a while; nothing is left to wait for.
    process.exit(0)
  }
}
