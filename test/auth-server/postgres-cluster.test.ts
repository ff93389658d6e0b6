import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import pg from 'pg'
import { type AuthorizationServer, createAuthorizationServer } from '../../src/auth-server/index.ts'
import { createGuard } from '../../src/guard/index.ts'
import { openStore } from '../../src/storage/open.ts'
import type { Store } from '../../src/storage/store.ts'
import { capturingLogger } from '../support/capturing_logger.ts'
import { authorize, type Harness, registerPublicClient, SECRET, token } from './harness.ts'

const BASE_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA_PREFIX = `gh_cluster_${randomBytes(6).toString('hex')}`

interface Instance {
  origin: string
  server: Server
  store: Store
  auth: AuthorizationServer
}

/** One instance: its own HTTP server and connection pool, the deployment's issuer and secret. */
async function startInstance(schema: string, issuer: string | undefined): Promise<Instance> {
  let auth: AuthorizationServer | undefined
  const server = createServer(async (req, res) => {
    if (!auth || !(await auth.handle(req, res))) res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const store = await openStore(`${BASE_URL}?schema=${schema}`, { dataDir: '/nonexistent' })
  const instance = { origin, server, store } as Instance
  try {
    instance.auth = auth = await createAuthorizationServer({
      issuer: issuer ?? origin,
      store,
      secret: SECRET,
      logger: capturingLogger(),
      resources: [{ url: `${issuer ?? origin}/mcp`, scopes: ['mcp:read', 'mcp:write'], default: true }],
    })
    return instance
  } catch (error) {
    await stopInstance(instance)
    throw error
  }
}

async function stopInstance({ server, store }: Instance) {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  await store.close()
}

const schemas: string[] = []
const freshSchema = () => {
  schemas.push(`${SCHEMA_PREFIX}_${schemas.length + 1}`)
  return schemas.at(-1) as string
}

after(async () => {
  const client = new pg.Client({ connectionString: BASE_URL })
  await client.connect()
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  } finally {
    await client.end()
  }
})

test('eight instances started at once on an empty schema agree on one signing key', async () => {
  const schema = freshSchema()
  const started = await Promise.allSettled(
    Array.from({ length: 8 }, () => startInstance(schema, 'http://127.0.0.1:1')),
  )
  const instances = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))
  await Promise.all(instances.map(stopInstance))
  for (const s of started) if (s.status === 'rejected') throw s.reason
  assert.equal(new Set(instances.map((i) => i.auth.signingKid)).size, 1)
})

describe('three authorization servers on one PostgreSQL schema behave as one', () => {
  let issuer: string
  let resource: string
  let instances: Instance[]
  let clientId: string

  before(async () => {
    // A rolling start: the first instance creates the signing key, the others start together and load it.
    const schema = freshSchema()
    const first = await startInstance(schema, undefined)
    issuer = first.origin
    resource = `${issuer}/mcp`
    instances = [first, ...(await Promise.all([1, 2].map(() => startInstance(schema, issuer))))]
    // Registered on the third: a client known to one instance is known to all.
    clientId = await registerPublicClient(at(2))
  })
  after(async () => {
    await Promise.all((instances ?? []).map(stopInstance))
  })

  // The harness helpers only read `issuer` (where requests go) and `resource`.
  const at = (index: number) => ({ issuer: instance(index).origin, resource }) as Harness
  const instance = (index: number) => instances[index] as Instance

  const redeemAt = (index: number, code: string, redirectUri: string, verifier: string) =>
    token(at(index), {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      resource,
    })
  const refreshAt = (index: number, refreshToken: string) =>
    token(at(index), { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId })

  async function tokensFromFirst() {
    const { code, redirectUri, verifier } = await authorize(at(0), clientId)
    const { response, body } = await redeemAt(0, code, redirectUri, verifier)
    assert.equal(response.status, 200)
    return body
  }

  test('they sign with the same key, taken from the store, and publish the same JWKS', async () => {
    const kids = new Set(instances.map((i) => i.auth.signingKid))
    assert.equal(kids.size, 1)
    const jwks = await Promise.all(instances.map(async (i) => (await fetch(`${i.origin}/jwks`)).json()))
    assert.deepEqual(jwks[1], jwks[0])
    assert.deepEqual(jwks[2], jwks[0])
  })

  test('authorize on the first, redeem on the second, refresh on the third; our guard accepts the tokens', async () => {
    const { code, redirectUri, verifier } = await authorize(at(0), clientId)
    const redeemed = await redeemAt(1, code, redirectUri, verifier)
    assert.equal(redeemed.response.status, 200)
    const refreshed = await refreshAt(2, redeemed.body.refresh_token as string)
    assert.equal(refreshed.response.status, 200)
    assert.notEqual(refreshed.body.refresh_token, redeemed.body.refresh_token)

    const guard = await createGuard({
      resource,
      authorizationServers: [{ issuer }],
      logger: { warn: () => {}, info: () => {} },
    })
    for (const accessToken of [redeemed.body.access_token, refreshed.body.access_token]) {
      const verified = await guard.verifyToken(accessToken as string)
      assert.deepEqual(verified.audience, [resource])
      assert.equal(verified.clientId, clientId)
    }
  })

  test('one code redeemed concurrently on all three: exactly one 200, the others invalid_grant', async () => {
    const { code, redirectUri, verifier } = await authorize(at(0), clientId)
    const results = await Promise.all(
      [0, 1, 2, 0, 1, 2].map((index) => redeemAt(index, code, redirectUri, verifier)),
    )
    assert.deepEqual(results.map((r) => r.response.status).sort(), [200, 400, 400, 400, 400, 400])
    for (const r of results.filter((r) => r.response.status === 400))
      assert.equal(r.body.error, 'invalid_grant')
  })

  /** Unconsumed and unexpired in the shared store: the one refresh token of its grant a client can use. */
  const usable = async (refreshToken: string) => {
    const found = await instance(0).store.oidcAdapter('RefreshToken').find(refreshToken)
    return found !== undefined && found.consumed === undefined
  }

  test('one refresh token used concurrently on all three: no grant revoked, one issued refresh token usable', async () => {
    const { refresh_token } = await tokensFromFirst()
    const results = await Promise.all([0, 1, 2].map((index) => refreshAt(index, refresh_token as string)))
    const issued = results.flatMap((r) => (r.response.status === 200 ? [r.body.refresh_token as string] : []))
    assert.ok(issued.length >= 1)
    for (const r of results.filter((r) => r.response.status !== 200))
      assert.equal(r.body.error, 'invalid_grant')
    const live = []
    for (const value of issued) if (await usable(value)) live.push(value)
    assert.equal(live.length, 1)
    assert.equal((await refreshAt(2, live[0] as string)).response.status, 200)
  })

  test('a retry on another instance within the reuse interval continues the grant', async () => {
    const first = await tokensFromFirst()
    const lost = await refreshAt(1, first.refresh_token as string)
    const retry = await refreshAt(2, first.refresh_token as string)
    assert.equal(retry.response.status, 200)
    assert.equal(await usable(lost.body.refresh_token as string), false)
    assert.equal((await refreshAt(0, retry.body.refresh_token as string)).response.status, 200)
  })

  test('refresh reuse is detected across instances and revokes the grant everywhere', async () => {
    const first = await tokensFromFirst()
    const rotated = await refreshAt(1, first.refresh_token as string)
    assert.equal(rotated.response.status, 200)
    const newer = await refreshAt(0, rotated.body.refresh_token as string)
    assert.equal(newer.response.status, 200)
    // The successor was used: no retry any more, the reuse of the first token revokes the grant.
    const reuse = await refreshAt(2, first.refresh_token as string)
    assert.equal(reuse.response.status, 400)
    assert.equal(reuse.body.error, 'invalid_grant')
    const newest = await refreshAt(1, newer.body.refresh_token as string)
    assert.equal(newest.response.status, 400)
    assert.equal(newest.body.error, 'invalid_grant')
  })

  test('a refresh token revoked on one instance is refused by the others', async () => {
    const { refresh_token } = await tokensFromFirst()
    const revoked = await fetch(`${instance(2).origin}/revoke`, {
      method: 'POST',
      body: new URLSearchParams({ token: refresh_token as string, client_id: clientId }),
    })
    assert.equal(revoked.status, 200)
    for (const index of [0, 1]) {
      const refused = await refreshAt(index, refresh_token as string)
      assert.equal(refused.body.error, 'invalid_grant')
    }
  })
})
