import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseVaultKeys, TokenVault } from '../../src/auth-server/index.ts'
import { openStore } from '../../src/storage/open.ts'
import type { Store } from '../../src/storage/store.ts'

const silent = { warn() {}, info() {} }

/**
 * A token endpoint that drops every connection without an answer (a provider that is down), or refuses the
 * request (400), counting what reaches it: the vault's pause after a failure must keep it from being asked.
 */
describe('token vault, a provider that drops connections: refreshes pause per connection', () => {
  let store: Store
  let dataDir: string
  let vault: TokenVault
  let requests = 0
  let answer: 'drop' | 'refuse' | 'busy' = 'drop'
  const endpoint = createServer((req, res) => {
    requests += 1
    if (answer === 'drop') return void req.socket.destroy()
    if (answer === 'busy') return void res.writeHead(429).end()
    res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}')
  })

  before(async () => {
    endpoint.listen(0, '127.0.0.1')
    await once(endpoint, 'listening')
    const origin = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`
    dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-vault-backoff-'))
    store = await openStore(undefined, { dataDir })
    vault = new TokenVault(
      store,
      silent,
      { issuer: 'http://127.0.0.1:9', interactionPath: '/interaction/' },
      {
        keys: parseVaultKeys(`k1:${randomBytes(32).toString('base64')}`, 'test'),
        connections: [
          {
            id: 'acme',
            name: 'Acme',
            authorizationEndpoint: `${origin}/authorize`,
            tokenEndpoint: `${origin}/token`,
            clientId: 'gatehouse',
            clientSecret: 'gatehouse-secret',
            scopes: [],
          },
        ],
      },
    )
  })
  after(async () => {
    endpoint.closeAllConnections()
    endpoint.close()
    await store?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  const connect = (userId: string, expiresAt: number) =>
    vault.connect(userId, 'acme', {
      accessToken: `${userId}-access`,
      refreshToken: `${userId}-refresh`,
      expiresAt,
      scope: undefined,
    })
  const unavailable = (retryAfterSeconds?: number) => ({
    ok: false,
    reason: 'unavailable',
    connectUrl: 'http://127.0.0.1:9/interaction/connect/acme',
    name: 'Acme',
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  })

  test('a dropped connection pauses the connection for every user; an unexpired token is still used; a 400 starts no pause, a 429 does', async () => {
    await connect('alice', 1)
    // Within refresh_before_seconds (60) of its expiry: refreshed when possible, used while valid.
    await connect('bob', Math.floor(Date.now() / 1000) + 30)
    assert.deepEqual(await vault.header('alice', 'acme'), unavailable(1))
    assert.equal(requests, 1)
    const [alice, bob] = await Promise.all([vault.header('alice', 'acme'), vault.header('bob', 'acme')])
    assert.deepEqual(alice, unavailable(1))
    assert.deepEqual(bob, {
      ok: true,
      accessToken: 'bob-access',
      header: { name: 'authorization', value: 'Bearer bob-access' },
    })
    assert.equal(requests, 1)
    assert.equal((await store.connections.find('alice', 'acme'))?.status, 'active')

    await sleep(1000)
    answer = 'refuse'
    assert.deepEqual(await vault.header('alice', 'acme'), unavailable())
    assert.equal(requests, 2)
    assert.deepEqual(await vault.header('alice', 'acme'), unavailable())
    assert.equal(requests, 3)
    // Too many requests: the second failure of the provider in a row, twice the first pause.
    answer = 'busy'
    assert.deepEqual(await vault.header('alice', 'acme'), unavailable(2))
    assert.equal(requests, 4)
    const paused = await vault.header('alice', 'acme')
    assert.ok(!paused.ok && paused.reason === 'unavailable' && (paused.retryAfterSeconds ?? 0) >= 1)
    assert.equal(requests, 4)
  })
})
