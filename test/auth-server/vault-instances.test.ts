import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import pg from 'pg'
import { parseVaultKeys, TokenVault } from '../../src/auth-server/index.ts'
import { openStore } from '../../src/storage/open.ts'
import type { Store } from '../../src/storage/store.ts'
import { startThirdParty, type ThirdParty, VAULT_CLIENT } from '../support/vault-provider.ts'
import { browse } from './harness.ts'

const POSTGRES = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA = `gh_vault_${randomBytes(6).toString('hex')}`
const KEYS = parseVaultKeys(`k1:${randomBytes(32).toString('base64')}`, 'test')
/** The Gatehouse origin the provider redirects to: never reached, the code is read from the redirect. */
const ORIGIN = 'http://127.0.0.1:9'
const silent = { warn() {}, info() {} }

/**
 * Two Gatehouse instances, each with its own store connection to one database, refresh one user's expired
 * connection at once: the provider must see exactly one refresh, whichever backend they share.
 */
for (const backend of ['postgres', 'sqlite'] as const) {
  describe(`token vault, two instances on one ${backend} database`, () => {
    let third: ThirdParty
    let stores: Store[]
    let dataDir: string
    const instance = (store: Store) =>
      new TokenVault(
        store,
        silent,
        { issuer: ORIGIN, interactionPath: '/interaction/' },
        {
          keys: KEYS,
          connections: [
            {
              id: 'acme',
              name: 'Acme',
              issuer: third.issuer,
              clientId: VAULT_CLIENT.id,
              clientSecret: VAULT_CLIENT.secret,
              scopes: ['repo'],
            },
          ],
        },
      )

    before(async () => {
      third = await startThirdParty()
      third.start(`${ORIGIN}/interaction/connected/acme`)
      dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-vault-'))
      const url = backend === 'postgres' ? `${POSTGRES}?schema=${SCHEMA}` : undefined
      stores = [await openStore(url, { dataDir }), await openStore(url, { dataDir })]
    })
    after(async () => {
      for (const store of stores ?? []) await store.close()
      await third?.close()
      await rm(dataDir, { recursive: true, force: true })
      if (backend !== 'postgres') return
      const client = new pg.Client({ connectionString: POSTGRES })
      await client.connect()
      await client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
      await client.end()
    })

    test('connected through the provider leg, then 12 concurrent uses across both instances during a refresh: one refresh, one token', async () => {
      const [first, second] = stores.map(instance) as [TokenVault, TokenVault]
      const provider = first.providers.get('acme')
      assert.ok(provider)
      const start = await provider.start()
      assert.equal(start.url.searchParams.get('code_challenge_method'), 'S256')
      const redirect = await browse(start.url.href)
      const callback = new URL(redirect.headers.get('location') ?? '')
      assert.equal(`${callback.origin}${callback.pathname}`, `${ORIGIN}/interaction/connected/acme`)
      await first.connect('alice', 'acme', await provider.finish(callback, start.state, start.codeVerifier))

      const store = stores[0] as Store
      const row = await store.connections.find('alice', 'acme')
      assert.ok(row && (await store.connections.update('alice', 'acme', row.version, { expiresAt: 1 })))
      third.delayMs = 300
      const answers = await Promise.all(
        Array.from({ length: 12 }, (_, i) => (i % 2 ? second : first).header('alice', 'acme')),
      ).finally(() => {
        third.delayMs = 0
      })
      assert.equal(third.counts.refreshes, 1)
      assert.equal(third.counts.invalidGrants, 0)
      assert.equal(new Set(answers.map((answer) => (answer.ok ? answer.header.value : 'refused'))).size, 1)
      const stored = await store.connections.find('alice', 'acme')
      assert.equal(stored?.leaseUntil, undefined)
      assert.ok((stored?.expiresAt ?? 0) > Date.now() / 1000)
    })
  })
}
