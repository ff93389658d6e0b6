import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { describe, it, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { createClient } from '@redis/client'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import pg from 'pg'
import { tempDir } from '../support/embedded-gateway.ts'
import { freePort, INITIALIZE } from '../support/gateway-harness.ts'
import { haproxyInstalled, startHaproxy } from '../support/haproxy.ts'
import { startSdkHttpUpstream } from '../support/sdk-http-upstream.ts'
import {
  CLIENT_ID,
  createUsers,
  revoke,
  type ServeChild,
  type ServeOptions,
  signIn,
  startServeChild,
  type Tokens,
} from '../support/serve-child.ts'

const POSTGRES = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
/** This file's own Redis database; each cluster also has its own key prefix. */
const REDIS_DB = 7
const INSTANCES = ['gh1', 'gh2', 'gh3']
/** Node's own: the test puts a recording one in its place while users sign in. */
const nodeFetch = globalThis.fetch

/** Which instance (HAProxy's `X-Served-By`) answered each kind of request, as the clients saw it. */
class Served {
  readonly counts = new Map<string, Map<string, number>>()
  /** The instances each MCP session's requests reached. */
  readonly sessions = new Map<string, Set<string>>()

  /** A fetch for every client of the test: it notes who answered. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const response = await nodeFetch(input, init)
    const by = response.headers.get('x-served-by')
    if (by === null) return response
    const url = new URL(input instanceof Request ? input.url : input)
    const grant = init?.body instanceof URLSearchParams ? init.body.get('grant_type') : null
    // Interaction ids are left out: one line per page, not per sign-in.
    const path = url.pathname.replace(/\/[\w-]{20,}/g, '/:uid')
    const kind = path === '/mcp' ? `mcp ${init?.method ?? 'GET'}` : path + (grant ? ` ${grant}` : '')
    this.note(kind, by)
    const session = new Headers(init?.headers).get('mcp-session-id') ?? response.headers.get('mcp-session-id')
    if (url.pathname === '/mcp' && session !== null) {
      const instances = this.sessions.get(session) ?? new Set<string>()
      this.sessions.set(session, instances.add(by))
    }
    return response
  }

  note(kind: string, by: string): void {
    const perInstance = this.counts.get(kind) ?? new Map<string, number>()
    this.counts.set(kind, perInstance.set(by, (perInstance.get(by) ?? 0) + 1))
  }

  /** The instances that answered requests of `kind` (a prefix: `mcp` is every MCP request). */
  instances(kind: string): Set<string> {
    const found = new Set<string>()
    for (const [name, perInstance] of this.counts)
      if (name.startsWith(kind)) for (const [by, count] of perInstance) if (count > 0) found.add(by)
    return found
  }

  table(): string {
    return [...this.counts]
      .map(
        ([kind, perInstance]) =>
          `${kind}: ${INSTANCES.map((i) => `${i} ${perInstance.get(i) ?? 0}`).join(', ')}`,
      )
      .join(' | ')
  }
}

interface Cluster {
  /** The public MCP URL, on HAProxy. */
  resource: string
  issuer: string
  instances: Map<string, ServeChild>
  ports: Map<string, number>
  served: Served
}

/**
 * Three `gatehouse serve` on one PostgreSQL schema and one Redis prefix of their own, behind HAProxy in
 * round robin (`sticky`: pinned by Mcp-Session-Id). `upstream`: an HTTP MCP server; server-everything over
 * stdio when undefined.
 */
async function startCluster(
  t: TestContext,
  options: { upstream: string | undefined; sticky: boolean; users: string[] },
): Promise<Cluster> {
  const id = randomBytes(4).toString('hex')
  const schema = `scale_${id}`
  const prefix = `scale-${id}:`
  const redisUrl = `${REDIS}/${REDIS_DB}`
  const storageUrl = `${POSTGRES}?schema=${schema}`
  const lbPort = await freePort()
  const resource = `http://127.0.0.1:${lbPort}/mcp`
  const dataDir = await tempDir('scale')
  t.after(async () => {
    await rm(dataDir, { recursive: true, force: true })
    const db = new pg.Client({ connectionString: POSTGRES })
    await db.connect()
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await db.end()
    const redis = createClient({ url: redisUrl })
    await redis.connect()
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(keys)
    await redis.close()
  })
  const settings = {
    public_url: resource,
    shared_state: { redis_url: redisUrl, key_prefix: prefix },
    sessions: {
      max_sessions_per_user: 200,
      new_sessions_per_user_per_minute: 6000,
      new_sessions_per_minute: 60_000,
      max_sessions: 1000,
    },
  }
  const base: ServeOptions = { dataDir, storageUrl, upstream: options.upstream, settings }
  await createUsers(base, options.users)
  const ports = new Map<string, number>()
  for (const name of INSTANCES) ports.set(name, await freePort())
  const instances = new Map<string, ServeChild>()
  // One after the other: the first creates the signing keys, the others find them in the store.
  for (const name of INSTANCES) {
    const dir = await tempDir(`scale-${name}`)
    t.after(() => rm(dir, { recursive: true, force: true }))
    instances.set(name, await startServeChild({ ...base, dataDir: dir, port: ports.get(name) as number }))
  }
  t.after(() => Promise.all([...instances.values()].map((serve) => serve.stop('SIGKILL'))))
  const lb = await startHaproxy(dataDir, {
    port: lbPort,
    sticky: options.sticky,
    backends: INSTANCES.map((name) => ({ name, port: ports.get(name) as number })),
  })
  t.after(() => lb.stop())
  return { resource, issuer: `http://127.0.0.1:${lbPort}`, instances, ports, served: new Served() }
}

/** An MCP SDK client through HAProxy; its requests are noted in `served`. */
async function connect(cluster: Cluster, accessToken: string): Promise<Client> {
  const client = new Client({ name: 'scale-test', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(cluster.resource), {
    requestInit: { headers: { authorization: `Bearer ${accessToken}` } },
    fetch: cluster.served.fetch,
  })
  await client.connect(transport)
  return client
}

async function echo(client: Client, message: string): Promise<void> {
  const { content } = await client.callTool({ name: 'echo', arguments: { message } })
  assert.deepEqual(content, [{ type: 'text', text: `Echo: ${message}` }])
}

/** A refresh through HAProxy from `address` (each client its own, as the token endpoint limits per address). */
async function refresh(cluster: Cluster, refreshToken: string, address: string) {
  const response = await cluster.served.fetch(`${cluster.issuer}/token`, {
    method: 'POST',
    headers: { 'x-forwarded-for': address },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: CLIENT_ID,
    }),
  })
  return { status: response.status, body: (await response.json()) as Tokens & { error?: string } }
}

/** A DPoP key pair and its proofs (RFC 9449 §4.2). */
async function dpopKey() {
  const { privateKey, publicKey } = await generateKeyPair('ES256')
  const jwk = await exportJWK(publicKey)
  return (method: string, url: string, accessToken?: string) =>
    new SignJWT({
      htm: method,
      htu: url,
      jti: randomUUID(),
      ...(accessToken ? { ath: createHash('sha256').update(accessToken).digest('base64url') } : {}),
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
      .setIssuedAt()
      .sign(privateKey)
}

/** Waits until `done` or `limitMs`; false when the limit came first. */
async function until(done: () => boolean, limitMs: number): Promise<boolean> {
  const deadline = Date.now() + limitMs
  while (!done() && Date.now() < deadline) await sleep(100)
  return done()
}

const skipUnlessHaproxy = haproxyInstalled() ? {} : { skip: 'no /usr/sbin/haproxy (apt-get install haproxy)' }

describe('three gatehouse serve instances behind HAProxy act as one', skipUnlessHaproxy, () => {
  it('HTTP upstream, round robin without stickiness: authorize, call, refresh, revoke, DPoP replay, SIGKILL', {
    timeout: 240_000,
  }, async (t) => {
    const upstream = await startSdkHttpUpstream()
    t.after(() => upstream.close())
    const users = ['ada', 'bob', 'cyd', 'dee', 'eve']
    const cluster = await startCluster(t, { upstream: upstream.url, sticky: false, users })
    const { served, resource, issuer } = cluster

    // Sign-in pages, the code and the token requests land wherever HAProxy sends them.
    globalThis.fetch = served.fetch as typeof fetch
    t.after(() => {
      globalThis.fetch = nodeFetch
    })
    const tokens = new Map<string, Tokens>()
    for (const [i, user] of users.entries())
      tokens.set(user, await signIn(issuer, resource, user, `10.20.0.${i + 1}`))
    globalThis.fetch = nodeFetch

    // One session per user, its requests spread over the three instances: every one admits the owner.
    for (const [user, issued] of tokens) {
      const client = await connect(cluster, issued.access_token)
      for (let call = 0; call < 4; call++) await echo(client, `${user} ${call}`)
      await client.close()
    }
    assert.equal(upstream.calls.length, users.length * 4)
    for (const [session, instances] of served.sessions)
      assert.ok(instances.size >= 2, `session ${session} reached only ${[...instances]}`)

    // A session is refused (404) on every instance to anyone but its owner; the upstream sees nothing.
    const ada = await connect(cluster, (tokens.get('ada') as Tokens).access_token)
    const adaSession = (ada.transport as StreamableHTTPClientTransport).sessionId as string
    const before = upstream.calls.length
    const refusedBy = new Set<string>()
    for (let attempt = 0; attempt < 6; attempt++) {
      const answer = await served.fetch(resource, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${(tokens.get('bob') as Tokens).access_token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': adaSession,
          'mcp-protocol-version': '2025-06-18',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 7,
          method: 'tools/call',
          params: { name: 'echo', arguments: { message: 'not yours' } },
        }),
      })
      assert.equal(answer.status, 404)
      await answer.arrayBuffer()
      refusedBy.add(answer.headers.get('x-served-by') as string)
    }
    assert.deepEqual([...refusedBy].sort(), INSTANCES)
    assert.equal(upstream.calls.length, before)
    await echo(ada, 'still mine')
    await ada.close()

    // Refreshes rotate on whichever instance; each token works on every other.
    for (const [i, user] of users.entries()) {
      for (let round = 0; round < 3; round++) {
        const answer = await refresh(cluster, (tokens.get(user) as Tokens).refresh_token, `10.20.0.${i + 1}`)
        assert.equal(answer.status, 200, JSON.stringify(answer.body))
        tokens.set(user, answer.body)
      }
      const client = await connect(cluster, (tokens.get(user) as Tokens).access_token)
      await echo(client, `${user} refreshed`)
      await client.close()
    }

    // Revoked through one instance, the grant is gone on all three.
    const revoked = (tokens.get('eve') as Tokens).refresh_token
    assert.equal(await revoke(issuer, revoked), 200)
    const revokedBy = new Set<string>()
    for (let attempt = 0; attempt < 6; attempt++) {
      const response = await served.fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'x-forwarded-for': '10.20.0.5' },
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: revoked,
          client_id: CLIENT_ID,
        }),
      })
      assert.equal(response.status, 400)
      assert.equal(((await response.json()) as { error: string }).error, 'invalid_grant')
      revokedBy.add(response.headers.get('x-served-by') as string)
    }
    assert.deepEqual([...revokedBy].sort(), INSTANCES)

    // A DPoP proof accepted by one instance is refused by the others: the jti cache is Redis.
    const proof = await dpopKey()
    const bound = await signIn(issuer, resource, 'dee', '10.20.0.9', (method, url) => proof(method, url))
    const mcp = async (body: unknown, dpop: string, session?: string) => {
      const response = await served.fetch(resource, {
        method: 'POST',
        headers: {
          authorization: `DPoP ${bound.access_token}`,
          dpop,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2025-06-18',
          ...(session ? { 'mcp-session-id': session } : {}),
        },
        body: JSON.stringify(body),
      })
      return { response, text: await response.text() }
    }
    const opened = await mcp(INITIALIZE, await proof('POST', resource, bound.access_token))
    assert.equal(opened.response.status, 200, opened.text)
    const session = opened.response.headers.get('mcp-session-id') as string
    const initialized = { jsonrpc: '2.0', method: 'notifications/initialized' }
    assert.equal(
      (await mcp(initialized, await proof('POST', resource, bound.access_token), session)).response.status,
      202,
    )
    const call = {
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'echo', arguments: { message: 'once' } },
    }
    const once = await proof('POST', resource, bound.access_token)
    const first = await mcp(call, once, session)
    assert.equal(first.response.status, 200, first.text)
    const acceptedBy = first.response.headers.get('x-served-by')
    const callsBefore = upstream.calls.length
    const replayedTo = new Set<string>()
    for (let attempt = 0; attempt < 3; attempt++) {
      const replay = await mcp(call, once, session)
      assert.equal(replay.response.status, 401, replay.text)
      assert.match(replay.response.headers.get('www-authenticate') ?? '', /error="invalid_dpop_proof"/)
      replayedTo.add(replay.response.headers.get('x-served-by') as string)
    }
    replayedTo.delete(acceptedBy as string)
    assert.ok(replayedTo.size >= 1, 'the replay reached no other instance')
    assert.equal(upstream.calls.length, callsBefore)

    const spread = {
      mcp: served.instances('mcp'),
      token: served.instances('/token'),
      login: served.instances('/interaction'),
    }
    t.diagnostic(`before the kill: ${served.table()}`)
    for (const [kind, instances] of Object.entries(spread))
      assert.deepEqual([...instances].sort(), INSTANCES, `${kind} requests reached only ${[...instances]}`)

    // Load on all three; gh2 is SIGKILLed while it runs; HAProxy's /readyz checks take it out, clients go on.
    const loaders = users.slice(0, 4)
    const rounds = loaders.map(() => 0)
    const failures: string[] = []
    const lostGrants: string[] = []
    let running = true
    const load = async (i: number) => {
      const user = loaders[i] as string
      let current = tokens.get(user) as Tokens
      while (running) {
        const answer = await refresh(cluster, current.refresh_token, `10.20.0.${i + 1}`).catch(
          () => undefined,
        )
        if (answer?.body.error === 'invalid_grant') {
          lostGrants.push(`${user}: ${JSON.stringify(answer.body)}`)
          return
        }
        if (answer?.status !== 200) {
          failures.push(`${user} refresh ${answer?.status ?? 'network error'}`)
          await sleep(100)
          continue
        }
        current = answer.body
        try {
          const client = await connect(cluster, current.access_token)
          for (let call = 0; call < 3; call++) await echo(client, `${user} load ${call}`)
          await (client.transport as StreamableHTTPClientTransport).terminateSession()
          await client.close()
          rounds[i] = (rounds[i] ?? 0) + 1
        } catch (error) {
          failures.push(`${user} call: ${(error as Error).message}`)
        }
      }
    }
    const loads = loaders.map((_, i) => load(i))
    assert.ok(await until(() => rounds.every((n) => n >= 2), 60_000), `no load before the kill: ${rounds}`)
    const atKill = [...rounds]
    const servedBeforeKill = served.instances('mcp')
    await (cluster.instances.get('gh2') as ServeChild).stop('SIGKILL')
    const after = await until(() => rounds.every((n, i) => n >= (atKill[i] as number) + 4), 90_000)
    running = false
    await Promise.all(loads)
    t.diagnostic(`rounds per client: ${rounds.join(', ')}; at the kill: ${atKill.join(', ')}`)
    t.diagnostic(
      `failed steps around the kill (retried): ${failures.length}: ${failures.slice(0, 5).join(' | ')}`,
    )
    t.diagnostic(`all requests: ${served.table()}`)
    assert.deepEqual(lostGrants, [])
    assert.ok(after, `clients stalled after the kill: ${rounds} (at the kill: ${atKill})`)
    assert.deepEqual([...servedBeforeKill].sort(), INSTANCES)
    for (const name of ['gh1', 'gh3'])
      assert.deepEqual((cluster.instances.get(name) as ServeChild).logErrors, [], `${name} logged errors`)
  })

  it('stdio upstream: HAProxy pins each session to its instance by Mcp-Session-Id', {
    timeout: 180_000,
  }, async (t) => {
    const cluster = await startCluster(t, { upstream: undefined, sticky: true, users: ['fay'] })
    const { served, resource, issuer } = cluster
    const tokens = await signIn(issuer, resource, 'fay', '10.30.0.1')
    const clients: Client[] = []
    for (let i = 0; i < 3; i++) {
      const client = await connect(cluster, tokens.access_token)
      for (let call = 0; call < 3; call++) await echo(client, `session ${i} call ${call}`)
      clients.push(client)
    }
    t.diagnostic(`stdio: ${served.table()}`)
    const homes = new Map<string, string>()
    for (const [session, instances] of served.sessions) {
      assert.equal(instances.size, 1, `session ${session} reached ${[...instances]}`)
      homes.set(session, [...instances][0] as string)
    }
    assert.equal(homes.size, 3)
    assert.ok(new Set(homes.values()).size >= 2, 'round robin should spread new sessions')

    // Without the pin, another instance does not know the session: its child lives in the first one.
    const [session, home] = [...homes][0] as [string, string]
    const elsewhere = INSTANCES.find((name) => name !== home) as string
    const direct = await fetch(`http://127.0.0.1:${cluster.ports.get(elsewhere)}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tokens.access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': session,
        'mcp-protocol-version': '2025-06-18',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    })
    assert.equal(direct.status, 404)
    await direct.arrayBuffer()
    for (const client of clients) {
      await (client.transport as StreamableHTTPClientTransport).terminateSession()
      await client.close()
    }
  })
})
