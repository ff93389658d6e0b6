/**
 * The authorization server against bare `oidc-provider` (its in-memory adapter, an auto-approving interaction
 * like Gatehouse's development one), on SQLite and on PostgreSQL: refresh, code redemption and the whole
 * authorize flow. Every server runs in this process and a child process is the client, so this process's
 * CPU over a round is the server's alone (PostgreSQL's own CPU is not in it: it is another process).
 */
import { type ChildProcess, fork } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync, StatementSync } from 'node:sqlite'
import Provider, { type ClientMetadata, type Configuration } from 'oidc-provider'
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js'
import pg from 'pg'
import { createAuthorizationServer } from '../src/auth-server/index.ts'
import { openStore } from '../src/storage/open.ts'
import type { Store } from '../src/storage/store.ts'
import { BENCH_REDIRECT_URI, type ClientReport, type ClientTask, type Flow } from './auth-client.ts'
import { interleave } from './measure.ts'

export const FLOWS: readonly Flow[] = ['refresh', 'code redemption', 'authorize flow']
export const BARE = 'bare oidc-provider, in-memory adapter'
const CLIENT_SCRIPT = new URL('./auth-client.ts', import.meta.url).pathname
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCOPE = 'mcp:read mcp:write'
const CLIENT_ID = 'bench-client'

export interface AuthServerResult {
  server: string
  flow: Flow
  opsPerCpuSecond: number
  cpuMicros: number
  /** Requests per second the client saw: the server shares the machine with the client. */
  opsPerSecond: number
  /** SQL statements per operation, BEGIN and COMMIT included (0 for the in-memory baseline). */
  statements: number
}

/** Every SQL statement this process sends, counted at the drivers: the store's cost in round trips. */
let statementsSent = 0
function countStatements(): void {
  const count = <T extends object>(proto: T, name: keyof T & string) => {
    const original = proto[name] as (...args: unknown[]) => unknown
    Object.defineProperty(proto, name, {
      value(this: unknown, ...args: unknown[]) {
        statementsSent++
        return original.apply(this, args)
      },
    })
  }
  for (const name of ['all', 'get', 'run', 'iterate'] as const) count(StatementSync.prototype, name)
  count(DatabaseSync.prototype, 'exec')
  count(pg.Client.prototype, 'query')
}

interface BenchedServer {
  name: string
  issuer: string
  resource: string
  close(): Promise<void>
}

export async function benchAuthServer(
  onProgress: (line: string) => void,
  { seconds, rounds, chains = 4 }: { seconds: number; rounds: number; chains?: number },
): Promise<AuthServerResult[]> {
  countStatements()
  const servers: BenchedServer[] = []
  const client = fork(CLIENT_SCRIPT, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    servers.push(await startBare())
    servers.push(await startGatehouse('Gatehouse, SQLite', undefined))
    const postgres = await startGatehouse('Gatehouse, PostgreSQL', freshPostgresSchema())
    servers.push(postgres)
    const results: AuthServerResult[] = []
    for (const flow of FLOWS) {
      onProgress(`authorization server, ${flow}: ${servers.map((s) => s.name).join(', ')}`)
      const measured = await interleave(
        servers.map((server) => () => round(client, server, flow, seconds / rounds, chains)),
        rounds,
        (m) => m.opsPerCpuSecond,
      )
      measured.forEach((m, i) => {
        results.push({ server: (servers[i] as BenchedServer).name, flow, ...m })
      })
    }
    return results
  } finally {
    client.send('exit')
    for (const server of servers) await server.close()
  }
}

async function round(
  client: ChildProcess,
  server: BenchedServer,
  flow: Flow,
  seconds: number,
  chains: number,
): Promise<Omit<AuthServerResult, 'server' | 'flow'>> {
  const task: ClientTask = {
    issuer: server.issuer,
    clientId: CLIENT_ID,
    resource: server.resource,
    scope: SCOPE,
    flow,
    seconds,
    chains,
  }
  const report = await new Promise<{
    report: ClientReport
    cpuMicros: number
    wallMs: number
    statements: number
  }>((resolve, reject) => {
    let window: { cpu: NodeJS.CpuUsage; at: number; statements: number } | undefined
    const onMessage = (message: 'measuring' | ClientReport) => {
      if (message === 'measuring') {
        window = { cpu: process.cpuUsage(), at: performance.now(), statements: statementsSent }
        return
      }
      client.off('message', onMessage)
      if (!window) return reject(new Error(`${server.name} ${flow}: ${message.firstFailure}`))
      const cpu = process.cpuUsage(window.cpu)
      resolve({
        report: message,
        cpuMicros: cpu.user + cpu.system,
        wallMs: performance.now() - window.at,
        statements: statementsSent - window.statements,
      })
    }
    client.on('message', onMessage)
    client.send(task)
  })
  const { ops, failures, firstFailure } = report.report
  if (failures > 0 || ops === 0)
    throw new Error(`${server.name} ${flow}: ${failures} failures, first: ${firstFailure}`)
  return {
    opsPerCpuSecond: ops / (report.cpuMicros / 1e6),
    cpuMicros: report.cpuMicros / ops,
    opsPerSecond: ops / (report.wallMs / 1000),
    statements: report.statements / ops,
  }
}

async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => unknown,
): Promise<{ server: Server; origin: string }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

const closeServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })

/** Gatehouse's authorization server as the gateway mounts it, with its development interactions. */
async function startGatehouse(name: string, postgresUrl: string | undefined): Promise<BenchedServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-as-'))
  const store = await openStore(postgresUrl ?? `sqlite:${join(dataDir, 'as.db')}`, { dataDir })
  const silent = { info: () => {}, warn: () => {}, error: () => {} }
  let handle: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean> = () => false
  const { server, origin } = await listen(async (req, res) => {
    if (!(await handle(req, res))) res.writeHead(404).end()
  })
  const resource = `${origin}/mcp`
  const auth = await createAuthorizationServer({
    issuer: origin,
    store,
    secret: randomBytes(32).toString('base64url'),
    logger: silent,
    resources: [{ url: resource, scopes: SCOPE.split(' '), default: true }],
    clients: [benchClient()],
    // The limit stays in the path (its cost is measured) but one client address must not hit it.
    tokenRateLimit: { limit: 1_000_000_000, windowSeconds: 60 },
  })
  handle = (req, res) => auth.handle(req, res)
  return {
    name,
    issuer: origin,
    resource,
    async close() {
      await closeServer(server)
      await closeStore(store, postgresUrl)
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

function benchClient(): ClientMetadata & { response_types: ['code'] } {
  return {
    client_id: CLIENT_ID,
    redirect_uris: [BENCH_REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    scope: SCOPE,
  }
}

/**
 * The same protocol surface on bare `oidc-provider`: PKCE, a resource indicator giving an ES256 `at+jwt`,
 * rotating refresh tokens, and an interaction that signs in and approves at once.
 */
async function startBare(): Promise<BenchedServer> {
  let provider: Provider | undefined
  const { server, origin } = await listen(async (req, res) => {
    const p = provider as Provider
    if (req.url?.startsWith('/interaction/')) return approve(p, req, res)
    return p.callback()(req, res)
  })
  const resource = `${origin}/mcp`
  const records = new Map<string, unknown>()
  const configuration: Configuration = {
    clients: [{ ...benchClient(), id_token_signed_response_alg: 'ES256' }],
    scopes: ['openid', 'offline_access', ...SCOPE.split(' ')],
    pkce: { required: () => true },
    routes: { authorization: '/authorize' },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async () => true,
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: SCOPE,
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    jwks: { keys: [es256Jwk()] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    // The provider's own in-memory adapter over a Map: its default LRU keeps 1,000 entries, fewer than the
    // records of the codes prepared for a round when BENCH_SECONDS is above 2, and codes were evicted unredeemed.
    adapter: (model: string) => new MemoryAdapter(model, records),
  }
  provider = new Provider(origin, configuration)
  return { name: BARE, issuer: origin, resource, close: () => closeServer(server) }
}

async function approve(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { prompt, params, session, grantId } = await provider.interactionDetails(req, res)
  if (prompt.name === 'login' || !session) {
    await provider.interactionFinished(req, res, { login: { accountId: 'bench-user' } })
    return
  }
  const grant =
    (grantId ? await provider.Grant.find(grantId) : undefined) ??
    new provider.Grant({ accountId: session.accountId, clientId: params.client_id as string })
  const missing = prompt.details as {
    missingOIDCScope?: string[]
    missingResourceScopes?: Record<string, string[]>
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '))
  for (const [url, scopes] of Object.entries(missing.missingResourceScopes ?? {}))
    grant.addResourceScope(url, scopes.join(' '))
  await provider.interactionFinished(
    req,
    res,
    { consent: { grantId: await grant.save() } },
    { mergeWithLastSubmission: true },
  )
}

function es256Jwk() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { ...privateKey.export({ format: 'jwk' }), kid: 'bench', alg: 'ES256', use: 'sig' }
}

/** A schema of its own, dropped at the end, so the benchmark never meets a test's tables. */
function freshPostgresSchema(): string {
  return `${POSTGRES_URL}?schema=gh_bench_${randomBytes(6).toString('hex')}`
}

async function closeStore(store: Store, postgresUrl: string | undefined): Promise<void> {
  await store.close()
  if (postgresUrl === undefined) return
  const url = new URL(postgresUrl)
  const schema = url.searchParams.get('schema') as string
  url.searchParams.delete('schema')
  const admin = new pg.Client({ connectionString: url.toString() })
  await admin.connect()
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  } finally {
    await admin.end()
  }
}
