/**
 * The gateway's cost per request: the same MCP `tools/call` sent straight to an upstream, through
 * `gatehouse serve` and through the bare reverse proxies of `bare-proxy.ts` (all in this process), side by
 * side, rounds alternated. The upstreams run in child processes, so the proxy's CPU (this process) and the
 * upstream's (read from /proc) are counted apart.
 * Run as `node bench/gateway.ts upstream` it is the minimal upstream itself.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { type AddressInfo, createServer as createNetServer } from 'node:net'
import { SignJWT } from 'jose'
import { type GatewayFlags, loadGatewayConfig } from '../src/gateway/config.ts'
import { UpstreamIdentity } from '../src/gateway/identity.ts'
import { type Gateway, startGateway } from '../src/gateway/server.ts'
import type { TestIdp } from '../test/support/idp.ts'
import { startNodeProxy, startUndiciProxy } from './bare-proxy.ts'
import { accessTokenClaims, guardFor, RESOURCE, startIssuer } from './fixtures.ts'
import type { LoadConfig, LoadReport } from './load.ts'
import { benchSeconds, interleaveRounds, measureSideBySide } from './measure.ts'

export interface GatewayResult {
  upstream: string
  route: string
  load: LoadReport
  /** CPU per request over the measured window of the median round, in this process (the gateway)... */
  gatewayCpuMicros: number
  /** ...and in the upstream's process. */
  upstreamCpuMicros: number
  /** The gateway's CPU per request in each round, in round order (for ratios paired by round). */
  gatewayCpuMicrosByRound: number[]
}

export interface GatewayCost {
  step: string
  cpuMicros: number
}

export const DIRECT_ROUTE = 'direct, no auth'
/** The baseline of issue 10's target: the gateway's CPU per request at most 1.2 times this proxy's. */
export const BARE_ROUTE = 'bare node:http proxy, keep-alive agent'

const LOAD_SCRIPT = new URL('./load.ts', import.meta.url).pathname
const EVERYTHING = createRequire(import.meta.url).resolve(
  '@modelcontextprotocol/server-everything/dist/index.js',
)
const ROUNDS = 5
const PROTOCOL_VERSION = '2025-06-18'
const MCP_HEADERS = {
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': PROTOCOL_VERSION,
}
const ECHO_CALL = { method: 'tools/call', params: { name: 'echo', arguments: { message: 'hello' } } }
const TICK_MICROS = 1e6 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }))

interface Route {
  upstream: string
  route: string
  port: number
  authorization?: string
  sessionId?: string
  /** The process that answers behind the route; its CPU is the upstream's. */
  upstreamPid: number
}

/**
 * Three upstreams: a minimal stateless node:http JSON-RPC server, server-everything over Streamable HTTP
 * (one session) and over stdio behind the gateway (one session, one child process).
 */
export async function benchGateway(
  connections: number,
  onProgress: (line: string) => void,
): Promise<GatewayResult[]> {
  const idp = await startIssuer('RS256')
  const authorization = `Bearer ${await idp.sign(accessTokenClaims(idp.issuer))}`
  const stack: (() => Promise<unknown> | unknown)[] = [() => idp.close()]
  const start = async <T>(started: Promise<T>, stop: (it: T) => Promise<unknown> | unknown) => {
    const it = await started
    stack.push(() => stop(it))
    return it
  }
  const behindGateway = (flags: GatewayFlags, cacheSeconds?: number) =>
    start(startBenchGateway(idp, flags, cacheSeconds), (gateway) => gateway.close())
  try {
    const minimal = await start(startChild([import.meta.filename, 'upstream']), stopChild)
    const minimalUrl = `http://127.0.0.1:${minimal.port}/mcp`
    const bare = await start(startNodeProxy(new URL(minimalUrl)), (proxy) => proxy.close())
    const undici = await start(startUndiciProxy(new URL(minimalUrl)), (proxy) => proxy.close())
    const minimalRoutes: Route[] = [
      { upstream: 'minimal node:http', route: DIRECT_ROUTE, port: minimal.port },
      { upstream: 'minimal node:http', route: BARE_ROUTE, port: bare.port },
      { upstream: 'minimal node:http', route: 'bare undici Pool proxy', port: undici.port },
      {
        upstream: 'minimal node:http',
        route: 'gateway, guard cache on',
        port: gatewayPort(await behindGateway({ upstream: minimalUrl })),
        authorization,
      },
      {
        upstream: 'minimal node:http',
        route: 'gateway, guard cache off',
        port: gatewayPort(await behindGateway({ upstream: minimalUrl }, 0)),
        authorization,
      },
    ].map((route) => ({ ...route, upstreamPid: minimal.pid }))

    const everything = await start(startChild([EVERYTHING, 'streamableHttp'], await freePort()), stopChild)
    const everythingUrl = `http://127.0.0.1:${everything.port}/mcp`
    const everythingGateway = gatewayPort(await behindGateway({ upstream: everythingUrl }))
    const everythingRoutes: Route[] = [
      {
        upstream: 'server-everything, Streamable HTTP',
        route: DIRECT_ROUTE,
        port: everything.port,
        sessionId: await openSession(everything.port),
      },
      {
        upstream: 'server-everything, Streamable HTTP',
        route: 'gateway, guard cache on',
        port: everythingGateway,
        authorization,
        sessionId: await openSession(everythingGateway, authorization),
      },
    ].map((route) => ({ ...route, upstreamPid: everything.pid }))

    const stdioGateway = gatewayPort(
      await behindGateway({ command: [process.execPath, EVERYTHING, 'stdio'] }),
    )
    const stdioSession = await openSession(stdioGateway, authorization)
    const stdioRoute: Route = {
      upstream: 'server-everything, stdio',
      route: 'gateway, guard cache on',
      port: stdioGateway,
      authorization,
      sessionId: stdioSession,
      upstreamPid: childRunning([process.execPath, EVERYTHING, 'stdio']),
    }

    const results: GatewayResult[] = []
    for (const routes of [minimalRoutes, everythingRoutes, [stdioRoute]]) {
      onProgress(`gateway: ${routes[0]?.upstream}: ${routes.map((r) => r.route).join(', ')}`)
      results.push(...(await measureRoutes(routes, connections)))
    }
    return results
  } finally {
    for (const stop of stack.reverse()) await stop()
  }
}

/** The gateway's own steps, timed alone in this process: where its CPU per request goes. */
export async function benchGatewaySteps(onProgress: (line: string) => void): Promise<GatewayCost[]> {
  const idp = await startIssuer('RS256')
  try {
    onProgress('gateway steps: guard.check with the cache on and off, identity JWT signing')
    const token = await idp.sign(accessTokenClaims(idp.issuer))
    const request = () =>
      new Request(RESOURCE, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
    const [cached, uncached] = [await guardFor(idp), await guardFor(idp, 0)]
    // The same one-minute EdDSA JWT through jose, as a baseline for the gateway's own signing.
    const { privateKey } = generateKeyPairSync('ed25519')
    const signingInput = Buffer.from((await signIdentity()).split('.').slice(0, 2).join('.'))
    function signIdentity() {
      return new SignJWT({
        client_id: 'bench-client',
        scope: 'tools:read tools:call',
        token_issuer: idp.issuer,
      })
        .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'bench' })
        .setIssuer(RESOURCE)
        .setAudience('http://127.0.0.1/mcp')
        .setSubject('user-4821')
        .setIssuedAt()
        .setExpirationTime('60s')
        .setJti(randomUUID())
        .sign(privateKey)
    }
    const identity = new UpstreamIdentity(RESOURCE, 'http://127.0.0.1/mcp')
    const verified = await cached.verifyToken(token)
    let callers = 0
    const steps: [string, () => unknown][] = [
      ['token check: guard.check, cache on (same token)', () => cached.check(request())],
      ['token check: guard.check, cache off (RS256 verify)', () => uncached.check(request())],
      [
        'identity headers: UpstreamIdentity.headers, reused (a caller within 45 s)',
        () => identity.headers(verified),
      ],
      [
        "identity headers: UpstreamIdentity.headers, signed (node:crypto; a caller's first request)",
        () => identity.headers({ ...verified, subject: `user-${callers++}` }),
      ],
      ['identity JWT baseline: EdDSA SignJWT (jose)', signIdentity],
      [
        'identity JWT: the Ed25519 signature alone (node:crypto, sync)',
        () => sign(null, signingInput, privateKey),
      ],
    ]
    const measured = await measureSideBySide(steps.map(([, op]) => op))
    return steps.map(([step], i) => ({ step, cpuMicros: 1e6 / (measured[i]?.opsPerCpuSecond ?? NaN) }))
  } finally {
    await idp.close()
  }
}

async function measureRoutes(routes: Route[], connections: number): Promise<GatewayResult[]> {
  const seconds = benchSeconds / ROUNDS
  const rounds = await interleaveRounds(
    routes.map((route) => () => measureLoad(route, { connections, seconds })),
    ROUNDS,
  )
  return rounds.map((runs, i) => {
    const byThroughput = [...runs].sort((a, b) => throughput(a) - throughput(b))
    return {
      upstream: routes[i]?.upstream ?? '',
      route: routes[i]?.route ?? '',
      ...(byThroughput[Math.floor(byThroughput.length / 2)] as Omit<
        GatewayResult,
        'upstream' | 'route' | 'gatewayCpuMicrosByRound'
      >),
      gatewayCpuMicrosByRound: runs.map((run) => run.gatewayCpuMicros),
    }
  })
}

const throughput = ({ load }: { load: LoadReport }) => load.requests / load.seconds

/** One load run against a route, with the CPU of the gateway and of the upstream over its measured window. */
function measureLoad(
  route: Route,
  { connections, seconds }: { connections: number; seconds: number },
): Promise<Omit<GatewayResult, 'upstream' | 'route' | 'gatewayCpuMicrosByRound'>> {
  const config: LoadConfig = {
    port: route.port,
    path: '/mcp',
    connections,
    seconds,
    message: ECHO_CALL,
    headers: { ...MCP_HEADERS, ...(route.sessionId ? { 'mcp-session-id': route.sessionId } : {}) },
    ...(route.authorization ? { authorization: route.authorization } : {}),
  }
  return new Promise((resolve, reject) => {
    let window: { gateway: NodeJS.CpuUsage; upstream: number } | undefined
    const child = spawn(process.execPath, [LOAD_SCRIPT, JSON.stringify(config)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    child.on('error', reject)
    child.on('message', (message: 'measuring' | LoadReport) => {
      if (message === 'measuring') {
        window = { gateway: process.cpuUsage(), upstream: cpuMicrosOf(route.upstreamPid) }
        return
      }
      if (!window) return reject(new Error('the load generator reported before measuring'))
      const gateway = process.cpuUsage(window.gateway)
      const upstream = cpuMicrosOf(route.upstreamPid) - window.upstream
      if (message.failures > 0)
        return reject(
          new Error(`${route.upstream}, ${route.route}: ${message.failures} answers were not 200`),
        )
      resolve({
        load: message,
        gatewayCpuMicros: (gateway.user + gateway.system) / message.requests,
        upstreamCpuMicros: upstream / message.requests,
      })
    })
    child.on('close', (code) => reject(new Error(`the load generator exited ${code} without a report`)))
  })
}

/** `gatehouse serve` as the CLI builds it, trusting the bench issuer, with upstream credentials mode none. */
async function startBenchGateway(idp: TestIdp, flags: GatewayFlags, cacheSeconds?: number): Promise<Gateway> {
  const config = await loadGatewayConfig(
    { ...flags, port: '0', publicUrl: RESOURCE, logLevel: 'silent' },
    { OAUTH_ISSUER_URL: idp.issuer, GATEHOUSE_UPSTREAM_CREDENTIALS: 'none' },
  )
  // The gateway's settings have no cache knob; the guard options it builds take one.
  return startGateway({
    ...config,
    guard: { ...config.guard, ...(cacheSeconds === undefined ? {} : { cacheSeconds }) },
  })
}

const gatewayPort = (gateway: Gateway): number => (gateway.server.address() as AddressInfo).port

/** initialize and notifications/initialized, as an MCP client opens a session; returns its id. */
async function openSession(port: number, authorization?: string): Promise<string> {
  const url = `http://127.0.0.1:${port}/mcp`
  const headers: Record<string, string> = {
    ...MCP_HEADERS,
    'content-type': 'application/json',
    ...(authorization ? { authorization } : {}),
  }
  const initialize = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: {
        protocolVersion: PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: 'gatehouse-bench', version: '0' },
      },
    }),
  })
  await initialize.text()
  const sessionId = initialize.headers.get('mcp-session-id')
  if (!initialize.ok || !sessionId)
    throw new Error(`initialize on port ${port} answered ${initialize.status}`)
  const initialized = await fetch(url, {
    method: 'POST',
    headers: { ...headers, 'mcp-session-id': sessionId },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  })
  await initialized.text()
  if (initialized.status !== 202) throw new Error(`notifications/initialized answered ${initialized.status}`)
  return sessionId
}

interface Child {
  process: ChildProcess
  pid: number
  port: number
}

/** Starts an upstream and waits until it accepts connections; `port` when the program cannot pick one. */
async function startChild(args: string[], port?: number): Promise<Child> {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, PORT: String(port ?? 0) },
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  })
  const listening = await new Promise<number>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code} at start`)))
    if (port === undefined) child.once('message', (message: { port: number }) => resolve(message.port))
    else void waitForPort(port).then(() => resolve(port), reject)
  })
  child.removeAllListeners('exit')
  return { process: child, pid: child.pid as number, port: listening }
}

function stopChild({ process: child }: Child): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill()
  })
}

/** A loaded machine (the shared CI box) can take well over 5 s to start server-everything: wait up to 60 s. */
async function waitForPort(port: number): Promise<void> {
  for (let attempt = 0; attempt < 1200; attempt++) {
    const ok = await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    )
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`nothing listens on port ${port}`)
}

/** A free loopback port, for a server that takes its port from PORT and cannot report one it picked. */
function freePort(): Promise<number> {
  const probe = createNetServer()
  return new Promise((resolve) =>
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo
      probe.close(() => resolve(port))
    }),
  )
}

/** User + system CPU of another process, from /proc (fields 14 and 15 of its stat line). */
function cpuMicrosOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * TICK_MICROS
}

/** The pid of this process's child running `command`: the stdio upstream the gateway spawned. */
function childRunning(command: string[]): number {
  const cmdline = `${command.join('\0')}\0`
  const children = readdirSync('/proc/self/task').flatMap((task) =>
    readFileSync(`/proc/self/task/${task}/children`, 'latin1').split(' ').filter(Boolean).map(Number),
  )
  const pid = children.find((child) => readFileSync(`/proc/${child}/cmdline`, 'latin1') === cmdline)
  if (pid === undefined) throw new Error(`no child process runs ${command.join(' ')}`)
  return pid
}

/** The minimal upstream: any POST gets a small `tools/call` result for its id; no session, no auth. */
function serveMinimalUpstream(): void {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const { id } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown }
      const body = JSON.stringify({
        jsonrpc: '2.0',
        id,
        result: { content: [{ type: 'text', text: 'Echo: hello' }] },
      })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  server.keepAliveTimeout = 60_000
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }))
}

if (import.meta.main && process.argv[2] === 'upstream') serveMinimalUpstream()
