import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, test } from 'node:test'
import pg from 'pg'
import { POSTGRES_DIALECT } from '../../src/storage/migrations.ts'
import { openStore } from '../../src/storage/open.ts'
import { StoreUnavailableError } from '../../src/storage/sql_store.ts'
import {
  assertBackfilled,
  assertUsernamesFolded,
  storeContract,
  version1Statements,
  version2Statements,
} from './contract.ts'

const BASE_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** Every test gets its own schema under this file's random prefix, so parallel test files never meet. */
const prefix = `gh_test_${randomBytes(6).toString('hex')}`
let schemas = 0
const freshUrl = () => `${BASE_URL}?schema=${prefix}_${++schemas}`

after(async () => {
  const client = new pg.Client({ connectionString: BASE_URL })
  await client.connect()
  try {
    const { rows } = await client.query('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [
      prefix,
    ])
    for (const { nspname } of rows) await client.query(`DROP SCHEMA ${nspname} CASCADE`)
  } finally {
    await client.end()
  }
})

storeContract({
  async fresh() {
    const url = freshUrl()
    return { open: (options) => openStore(url, { dataDir: '/nonexistent', ...options }) }
  },
})

test('postgres: stores on different schemas of one database do not see each other', async () => {
  const [a, b] = await Promise.all(
    [freshUrl(), freshUrl()].map((url) => openStore(url, { dataDir: '/nonexistent' })),
  )
  assert.ok(a && b)
  try {
    assert.equal(a.kind, 'postgres')
    await a.oidcAdapter('Grant').upsert('g', { accountId: 'x' }, 60)
    assert.equal(await b.oidcAdapter('Grant').find('g'), undefined)
    assert.deepEqual(await a.oidcAdapter('Grant').find('g'), { accountId: 'x' })
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})

test('postgres: migration 2 finds the account of records written by version 1', async () => {
  const url = freshUrl()
  const schema = new URL(url).searchParams.get('schema')
  const client = new pg.Client({ connectionString: BASE_URL })
  await client.connect()
  try {
    await client.query(`CREATE SCHEMA ${schema}; SET search_path = ${schema}`)
    for (const sql of version1Statements(POSTGRES_DIALECT)) await client.query(sql)
  } finally {
    await client.end()
  }
  const store = await openStore(url, { dataDir: '/nonexistent' })
  try {
    await assertBackfilled(store)
  } finally {
    await store.close()
  }
})

test('postgres: migration 3 folds usernames written before the rule; two that fold alike are refused by name', async () => {
  const url = freshUrl()
  const schema = new URL(url).searchParams.get('schema')
  const client = new pg.Client({ connectionString: BASE_URL })
  await client.connect()
  try {
    await client.query(`CREATE SCHEMA ${schema}; SET search_path = ${schema}`)
    for (const sql of version2Statements(POSTGRES_DIALECT)) await client.query(sql)
  } finally {
    await client.end()
  }
  const store = await openStore(url, { dataDir: '/nonexistent' })
  try {
    await assertUsernamesFolded(store)
  } finally {
    await store.close()
  }
})

test('postgres: a schema name that is not a plain identifier is refused before connecting', async () => {
  for (const schema of ['public;drop', 'Upper', '1abc', `a${'b'.repeat(63)}`, '']) {
    await assert.rejects(openStore(`${BASE_URL}?schema=${encodeURIComponent(schema)}`, { dataDir: '/x' }), {
      message: 'storage.url: schema must be lower-case letters, digits and underscores',
    })
  }
})

test('postgres: a connection failure does not echo the password of the URL', async () => {
  const error = await openStore('postgres://gatehouse:s3cret-pw@127.0.0.1:1/test', { dataDir: '/x' }).then(
    () => assert.fail('opened'),
    (caught: unknown) => caught,
  )
  assert.ok(error instanceof Error)
  assert.doesNotMatch(`${error.message} ${error.stack}`, /s3cret-pw/)
})

test('postgres: a connection lost in the middle of a transaction fails that write, not the process', async () => {
  const url = freshUrl()
  const schema = new URL(url).searchParams.get('schema')
  const store = await openStore(url, { dataDir: '/nonexistent' })
  const locker = new pg.Client({ connectionString: BASE_URL })
  await locker.connect()
  try {
    // The store's transaction waits on this lock with its pooled connection checked out; the server then
    // ends that connection, as a PostgreSQL restart does. pg emits the loss as an 'error' event on the client:
    // one without a listener crashed the gateway.
    await locker.query(`BEGIN; LOCK TABLE ${schema}.signing_keys IN ACCESS EXCLUSIVE MODE`)
    // The handler is attached now: the write can fail before the test reaches its assertion.
    const activating = assert.rejects(store.keys.activate('kid-1', 0), StoreUnavailableError)
    let waiting: number | undefined
    while (waiting === undefined) {
      // Only a backend this lock blocks: other runs on the same server have waiters of their own.
      const { rows } = await locker.query(
        'SELECT pid FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))',
      )
      waiting = rows[0]?.pid
    }
    await locker.query('SELECT pg_terminate_backend($1)', [waiting])
    await activating
    await locker.query('ROLLBACK')
    // The pool replaced the lost connection.
    assert.deepEqual(await store.keys.list(), [])
  } finally {
    await locker.end()
    await store.close()
  }
})
