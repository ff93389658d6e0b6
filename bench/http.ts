import { spawn } from 'node:child_process'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { requestHead } from '../src/guard/adapters/node_http.ts'
import type { Guard } from '../src/guard/index.ts'
import { accessTokenClaims, guardFor, startIssuer } from './fixtures.ts'
import type { LoadConfig, LoadReport } from './load.ts'
import { benchSeconds, interleave, positiveNumber } from './measure.ts'

export interface HttpResult {
  mode: string
  load: LoadReport
  /** Over the measured window of the median round: CPU the server spent per request it answered... */
  serverCpuMicros: number
  /** ...and the share of one core it used: near 100 % the server is the bottleneck, below it the client. */
  serverBusy: number
}

/** A 44-byte JSON-RPC answer, the smallest an MCP server sends. */
const ANSWER = Buffer.from('{"jsonrpc":"2.0","id":1,"result":{"pong":1}}')
const LOAD_SCRIPT = new URL('./load.ts', import.meta.url).pathname

export const connections = positiveNumber('BENCH_CONNECTIONS', 50)

/** Rounds per server mode, interleaved so contention on a shared machine hits every mode alike. */
const ROUNDS = 3

/** The same server with no auth, then behind guard.check with the verified-token cache off and on (RS256). */
export async function benchHttp(onProgress: (line: string) => void): Promise<HttpResult[]> {
  const idp = await startIssuer('RS256')
  const servers: BenchServer[] = []
  try {
    const authorization = `Bearer ${await idp.sign(accessTokenClaims(idp.issuer))}`
    const modes: [string, Guard | undefined][] = [
      ['baseline, no auth', undefined],
      ['guard.check RS256, cache off', await guardFor(idp, 0)],
      ['guard.check RS256, cache on (same token)', await guardFor(idp)],
    ]
    for (const [, guard] of modes) servers.push(await startServer(guard))
    onProgress(`HTTP: ${modes.map(([mode]) => mode).join(', ')}`)
    const seconds = benchSeconds / ROUNDS
    const results = await interleave(
      servers.map((server) => () => server.load({ authorization, connections, seconds })),
      ROUNDS,
      ({ load }) => load.requests / load.seconds,
    )
    return results.map((result, i) => ({ mode: modes[i]?.[0] ?? '', ...result }))
  } finally {
    await Promise.all(servers.map((server) => server.close()))
    await idp.close()
  }
}

interface BenchServer {
  load(config: Omit<LoadConfig, 'port' | 'path'>): Promise<Omit<HttpResult, 'mode'>>
  close(): Promise<void>
}

async function startServer(guard: Guard | undefined): Promise<BenchServer> {
  let answered = 0
  const server = createServer((req, res) => {
    answered++
    req.resume()
    if (!guard) return void res.end(ANSWER)
    guard.check(requestHead(req, req.url ?? '/')).then(
      (result) => (result.ok ? res.end(ANSWER) : refuse(res, result.response.status)),
      () => refuse(res, 500),
    )
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    load(config) {
      return new Promise((resolve, reject) => {
        let window: { cpu: NodeJS.CpuUsage; answered: number; at: number } | undefined
        const child = spawn(
          process.execPath,
          [LOAD_SCRIPT, JSON.stringify({ ...config, port, path: '/mcp' })],
          {
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          },
        )
        child.on('error', reject)
        child.on('message', (message: 'measuring' | LoadReport) => {
          if (message === 'measuring') {
            window = { cpu: process.cpuUsage(), answered, at: performance.now() }
            return
          }
          if (!window) return reject(new Error('the load generator reported before measuring'))
          const cpu = process.cpuUsage(window.cpu)
          const cpuMicros = cpu.user + cpu.system
          if (message.failures > 0)
            return reject(new Error(`${message.failures} requests were not answered 200`))
          resolve({
            load: message,
            serverCpuMicros: cpuMicros / (answered - window.answered),
            serverBusy: cpuMicros / 1000 / (performance.now() - window.at),
          })
        })
        // After a report this is a no-op; 'close' comes once the IPC channel has delivered everything.
        child.on('close', (code) => reject(new Error(`the load generator exited ${code} without a report`)))
      })
    },
    close() {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

function refuse(res: ServerResponse, status: number): void {
  res.statusCode = status
  res.end()
}
