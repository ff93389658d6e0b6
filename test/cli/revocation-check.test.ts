import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { revokeGrants } from '../../src/auth-server/index.ts'
import { storeRevocationCheck } from '../../src/cli/revocation_check.ts'
import type { VerifiedToken } from '../../src/guard/index.ts'
import { openStore } from '../../src/storage/index.ts'

const BASE_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA = `gh_test_${randomBytes(6).toString('hex')}`
const ISSUER = 'https://mcp.example.com'

after(async () => {
  const client = new pg.Client({ connectionString: BASE_URL })
  await client.connect()
  await client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await client.end()
})

const token = (subject: string, clientId: string, iat: number, issuer = ISSUER): VerifiedToken => ({
  token: 'not-used',
  issuer,
  subject,
  clientId,
  scopes: [],
  audience: [],
  expiresAt: iat + 600,
  claims: { iat },
  actor: 'user',
  dpopJkt: undefined,
  via: 'jwt',
})

test('two instances on one PostgreSQL: a revocation by either is enforced by both within the cache time', async () => {
  const url = `${BASE_URL}?schema=${SCHEMA}`
  const [first, second] = await Promise.all([1, 2].map(() => openStore(url, { dataDir: '/nonexistent' })))
  assert.ok(first && second)
  try {
    const cacheSeconds = 1
    const checkFirst = storeRevocationCheck(first, ISSUER, cacheSeconds)
    const checkSecond = storeRevocationCheck(second, ISSUER, cacheSeconds)
    const now = Math.floor(Date.now() / 1000)
    const issued = token('alice', 'app', now - 5)
    assert.equal(await checkFirst(issued), false)
    assert.equal(await checkSecond(issued), false)

    await revokeGrants(first, 'alice', 'app')
    // The first instance answered from its cache a moment ago; both see the revocation once it runs out.
    await sleep(cacheSeconds * 1000 + 50)
    assert.equal(await checkFirst(issued), true)
    assert.equal(await checkSecond(issued), true)
    // Warm: answered from memory, synchronously.
    assert.equal(checkSecond(issued), true)
    assert.equal(await checkSecond(token('alice', 'other-app', now - 5)), false, 'another client')
    assert.equal(await checkSecond(token('bob', 'app', now - 5)), false, 'another user')
    // A second after the clock now, which is past the revocation however long the steps above took.
    const later = Math.floor(Date.now() / 1000) + 1
    assert.equal(await checkSecond(token('alice', 'app', later)), false, 'issued after the revocation')
    assert.equal(
      await checkSecond({ ...issued, claims: {} }),
      true,
      'no iat: cannot show it came after the revocation',
    )
    assert.equal(
      checkSecond(token('alice', 'app', now - 5, 'https://other.example')),
      false,
      'another issuer',
    )

    await revokeGrants(second, 'alice')
    await sleep(cacheSeconds * 1000 + 50)
    assert.equal(await checkFirst(token('alice', 'other-app', now - 5)), true, 'every client')
  } finally {
    await Promise.all([first.close(), second.close()])
  }
})
