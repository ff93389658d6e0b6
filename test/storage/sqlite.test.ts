import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, test } from 'node:test'
import { Worker } from 'node:worker_threads'
import { normalizeUsername } from '../../src/storage/index.ts'
import { SQLITE_DIALECT } from '../../src/storage/migrations.ts'
import { openStore } from '../../src/storage/open.ts'
import {
  assertBackfilled,
  assertUsernamesFolded,
  storeContract,
  version1Statements,
  version2Statements,
} from './contract.ts'

const root = mkdtempSync(join(tmpdir(), 'gatehouse-storage-'))
after(() => rmSync(root, { recursive: true, force: true }))
let directories = 0
const freshDir = () => join(root, `store-${++directories}`)

storeContract({
  async fresh() {
    const dataDir = freshDir()
    return { open: (options) => openStore(undefined, { dataDir, ...options }) }
  },
})

test('sqlite: the default file is <dataDir>/gatehouse.db, owner-only, in WAL mode', async () => {
  const dataDir = freshDir()
  const store = await openStore(undefined, { dataDir })
  try {
    assert.equal(store.kind, 'sqlite')
    const path = join(dataDir, 'gatehouse.db')
    assert.equal(statSync(path).mode & 0o777, 0o600)
    assert.equal(statSync(dataDir).mode & 0o777, 0o700)
    const db = new DatabaseSync(path, { readOnly: true })
    assert.deepEqual({ ...db.prepare('PRAGMA journal_mode').get() }, { journal_mode: 'wal' })
    assert.deepEqual(
      db
        .prepare('SELECT version FROM schema_migrations')
        .all()
        .map((row) => row.version),
      [1, 2, 3, 4, 5],
    )
    db.close()
  } finally {
    await store.close()
  }
})

test('sqlite: migration 2 finds the account of records written by version 1', async () => {
  const dataDir = freshDir()
  mkdirSync(dataDir, { recursive: true })
  const db = new DatabaseSync(join(dataDir, 'gatehouse.db'))
  for (const sql of version1Statements(SQLITE_DIALECT)) db.exec(sql)
  db.close()
  const store = await openStore(undefined, { dataDir })
  try {
    await assertBackfilled(store)
  } finally {
    await store.close()
  }
})

test('sqlite: sqlite:<path> URLs, relative to the data directory or absolute', async () => {
  const dataDir = freshDir()
  const elsewhere = freshDir()
  const cases = [
    { url: 'sqlite:relative.db', file: join(dataDir, 'relative.db') },
    { url: 'sqlite:nested/dir/other.db', file: join(dataDir, 'nested/dir/other.db') },
    { url: `sqlite:${elsewhere}/absolute.db`, file: join(elsewhere, 'absolute.db') },
    { url: `sqlite://${elsewhere}/slashes.db`, file: join(elsewhere, 'slashes.db') },
  ]
  for (const { url, file } of cases) {
    const store = await openStore(url, { dataDir })
    await store.users.create({ username: url, passwordHash: undefined, externalId: undefined, claims: {} })
    await store.close()
    const db = new DatabaseSync(file, { readOnly: true })
    assert.deepEqual(
      { ...db.prepare('SELECT username FROM users').get() },
      { username: normalizeUsername(url) },
    )
    db.close()
  }
})

test('store urls: unknown schemes and an empty sqlite path are refused without echoing the url', async () => {
  const cases = [
    {
      url: 'mysql://root:s3cret@db/x',
      message: 'storage.url: expected sqlite:<path>, postgres://… or postgresql://…',
    },
    {
      url: 'redis://:s3cret@127.0.0.1',
      message: 'storage.url: expected sqlite:<path>, postgres://… or postgresql://…',
    },
    { url: 'sqlite:', message: 'storage.url: sqlite: needs a file path' },
  ]
  for (const { url, message } of cases)
    await assert.rejects(openStore(url, { dataDir: freshDir() }), { message })
})

test('sqlite: four threads with their own connections migrate, consume and count on one file at once', async () => {
  const dataDir = freshDir()
  const go = new Int32Array(new SharedArrayBuffer(4))
  const workers = Array.from(
    { length: 4 },
    () =>
      new Worker(new URL('./sqlite-worker.ts', import.meta.url), { workerData: { dataDir, go, hits: 10 } }),
  )
  // events.once rejects when the worker fails, so a crash cannot hang the test.
  const nextMessage = async (worker: Worker) => (await once(worker, 'message'))[0]
  await Promise.all(workers.map(nextMessage))
  const store = await openStore(undefined, { dataDir })
  await store.oidcAdapter('RefreshToken').upsert('raced', { jti: 'raced' }, 3600)
  const finished = Promise.all(workers.map(nextMessage))
  Atomics.store(go, 0, 1)
  Atomics.notify(go, 0)
  const results: Array<{ consumed: boolean; allowed: number }> = await finished
  assert.equal(results.filter((r) => r.consumed).length, 1)
  assert.equal(
    results.reduce((sum, r) => sum + r.allowed, 0),
    15,
  )
  assert.equal(typeof (await store.oidcAdapter('RefreshToken').find('raced'))?.consumed, 'number')
  await store.close()
})

test('sqlite: migration 3 folds usernames written before the rule; two that fold alike are refused by name', async () => {
  const dataDir = freshDir()
  mkdirSync(dataDir, { recursive: true })
  const db = new DatabaseSync(join(dataDir, 'gatehouse.db'))
  for (const sql of version2Statements(SQLITE_DIALECT)) db.exec(sql)
  db.close()
  const store = await openStore(undefined, { dataDir })
  try {
    await assertUsernamesFolded(store)
  } finally {
    await store.close()
  }
})
