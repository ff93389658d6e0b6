import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { afterEach, test } from 'node:test'
import { AmbiguousUsernameError, OidcConsumeConflictError } from '../../src/storage/index.ts'
import { type Dialect, MIGRATIONS, MIGRATIONS_TABLE } from '../../src/storage/migrations.ts'
import type { StoreOptions } from '../../src/storage/sql_store.ts'
import type { SigningKey, Store } from '../../src/storage/store.ts'

/** One empty storage place (a SQLite file, a PostgreSQL schema); every `open` gives a store sharing it. */
export interface StoreLocation {
  open(options?: StoreOptions): Promise<Store>
}

export interface StoreHarness {
  fresh(): Promise<StoreLocation>
}

const START = Date.UTC(2030, 0, 1)

/** A clock the test moves; stores opened with it read it on every call. */
function testClock() {
  const clock = { ms: START, now: () => clock.ms, advance: (seconds: number) => (clock.ms += seconds * 1000) }
  return clock
}

const seconds = (ms: number) => Math.floor(ms / 1000)

function isConsumeConflict(model: string) {
  return (error: unknown) =>
    error instanceof OidcConsumeConflictError &&
    error.message === `${model} record already consumed, expired or not found`
}

function key(kid: string, overrides: Partial<SigningKey> = {}): SigningKey {
  return {
    kid,
    alg: 'EdDSA',
    encryptedJwk: `ciphertext-of-${kid}`,
    state: 'retired',
    createdAt: 1000,
    retireAfter: undefined,
    ...overrides,
  }
}

/**
 * A database as version 1 left it, with a grant of alice's that predates the `account_id` column, and a
 * client whose name only mentions the key; run before the store's own migrations.
 */
export function version1Statements(dialect: Dialect): string[] {
  const digest = (value: string) => createHash('sha256').update(JSON.stringify(value)).digest('hex')
  const row = (model: string, id: string, payload: Record<string, string>) =>
    `INSERT INTO oidc_records (model, id, payload, grant_id) VALUES ('${model}', '${digest(id)}',
     '${JSON.stringify(payload)}', ${payload.grantId ? `'${digest(payload.grantId)}'` : 'NULL'})`
  return [
    MIGRATIONS_TABLE,
    ...(MIGRATIONS[0]?.statements(dialect) ?? []),
    'INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0)',
    row('Grant', 'g1', { jti: 'g1', accountId: 'alice', clientId: 'c' }),
    row('RefreshToken', 'rt1', { jti: 'rt1', grantId: 'g1', accountId: 'alice', clientId: 'c' }),
    row('Client', 'c', { client_id: 'c', client_name: 'says "accountId":"alice"' }),
  ]
}

/**
 * A database as version 2 left it, with usernames written before the one rule: an Okta-style federated name
 * with capitals, and two names that differ only in case.
 */
export function version2Statements(dialect: Dialect): string[] {
  const user = (id: string, username: string) =>
    `INSERT INTO users (id, username, external_id, claims, created_at) VALUES ('${id}', '${username}', 'https://idp|${id}', '{}', 0)`
  return [
    ...version1Statements(dialect),
    ...(MIGRATIONS[1]?.statements(dialect) ?? []),
    'INSERT INTO schema_migrations (version, applied_at) VALUES (2, 0)',
    user('u-okta', 'okta:00uAbC123XyZ'),
    user('u-upper', 'corp:Dup'),
    user('u-lower', 'corp:dup'),
  ]
}

/** Version 3 folded the names it could; two that fold alike stay as they were, and naming them is refused. */
export async function assertUsernamesFolded(store: Store): Promise<void> {
  const okta = await store.users.findByUsername('okta:00uAbC123XyZ')
  assert.equal(okta?.id, 'u-okta')
  assert.equal(okta?.username, 'okta:00uabc123xyz')
  assert.equal((await store.users.findByUsername('OKTA:00UABC123XYZ'))?.id, 'u-okta')
  for (const name of ['corp:Dup', 'corp:dup', 'CORP:DUP'])
    await assert.rejects(store.users.findByUsername(name), (error: Error) => {
      assert.ok(error instanceof AmbiguousUsernameError)
      assert.match(error.message, /"corp:Dup" and "corp:dup"|"corp:dup" and "corp:Dup"/)
      return true
    })
  assert.equal((await store.users.findById('u-upper'))?.username, 'corp:Dup')
  await assert.rejects(
    store.users.create({ username: 'corp:DUP', passwordHash: undefined, externalId: undefined, claims: {} }),
    { message: 'storage: a user named corp:dup already exists' },
  )
}

/** Version 2 found the account of the records written before it. */
export async function assertBackfilled(store: Store): Promise<void> {
  assert.equal(await store.revokeAccountGrants('alice', 'c'), 1)
  assert.equal(await store.oidcAdapter('RefreshToken').find('rt1'), undefined)
  assert.equal(await store.oidcAdapter('Grant').find('g1'), undefined)
  assert.deepEqual(await store.oidcAdapter('Client').find('c'), {
    client_id: 'c',
    client_name: 'says "accountId":"alice"',
  })
}

/** Registers the storage contract; both backends must pass it unchanged. */
export function storeContract(harness: StoreHarness): void {
  const opened: Store[] = []
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close()))
  })
  const track = (store: Store) => {
    opened.push(store)
    return store
  }
  /** A fresh location and `count` stores on it, all reading one test clock. */
  async function stores(count: number) {
    const clock = testClock()
    const location = await harness.fresh()
    const open = async () => track(await location.open({ now: clock.now }))
    const list = await Promise.all(Array.from({ length: count }, open))
    return { clock, location, open, stores: list, store: list[0] as Store }
  }

  test('oidc: upsert then find returns the payload; models are separate; unknown ids are undefined', async () => {
    const { store } = await stores(1)
    const codes = store.oidcAdapter('AuthorizationCode')
    const tokens = store.oidcAdapter('RefreshToken')
    await codes.upsert('same-id', { jti: 'same-id', kind: 'code', grantId: 'g1' }, 60)
    await tokens.upsert('same-id', { jti: 'same-id', kind: 'refresh', grantId: 'g1' }, 60)
    assert.deepEqual(await codes.find('same-id'), { jti: 'same-id', kind: 'code', grantId: 'g1' })
    assert.deepEqual(await tokens.find('same-id'), { jti: 'same-id', kind: 'refresh', grantId: 'g1' })
    assert.equal(await codes.find('other-id'), undefined)
    assert.equal(await store.oidcAdapter('Session').find('same-id'), undefined)
  })

  test('oidc: upsert replaces the payload and every indexed field', async () => {
    const { store } = await stores(1)
    const sessions = store.oidcAdapter('Session')
    await sessions.upsert('s1', { uid: 'uid-old', grantId: 'grant-old', v: 1 }, 60)
    await sessions.upsert('s1', { uid: 'uid-new', grantId: 'grant-new', v: 2 }, 60)
    assert.deepEqual(await sessions.find('s1'), { uid: 'uid-new', grantId: 'grant-new', v: 2 })
    assert.equal(await sessions.findByUid('uid-old'), undefined)
    assert.deepEqual(await sessions.findByUid('uid-new'), { uid: 'uid-new', grantId: 'grant-new', v: 2 })
    await sessions.revokeByGrantId('grant-old')
    assert.notEqual(await sessions.find('s1'), undefined)
    await sessions.revokeByGrantId('grant-new')
    assert.equal(await sessions.find('s1'), undefined)
  })

  test('oidc: findByUid and findByUserCode look within their model', async () => {
    const { store } = await stores(1)
    await store.oidcAdapter('Session').upsert('s', { uid: 'u-1' }, 60)
    await store.oidcAdapter('DeviceCode').upsert('d', { userCode: 'ABCD-EFGH', uid: 'u-2' }, 60)
    assert.deepEqual(await store.oidcAdapter('Session').findByUid('u-1'), { uid: 'u-1' })
    assert.equal(await store.oidcAdapter('Interaction').findByUid('u-1'), undefined)
    assert.deepEqual(await store.oidcAdapter('DeviceCode').findByUserCode('ABCD-EFGH'), {
      userCode: 'ABCD-EFGH',
      uid: 'u-2',
    })
    assert.equal(await store.oidcAdapter('DeviceCode').findByUserCode('ABCD-EFGX'), undefined)
    assert.equal(await store.oidcAdapter('Session').findByUserCode('ABCD-EFGH'), undefined)
  })

  test('oidc: a record is found until expiresIn seconds have passed, then by no lookup', async () => {
    const { store, clock } = await stores(1)
    const codes = store.oidcAdapter('DeviceCode')
    await codes.upsert('d1', { uid: 'u1', userCode: 'c1' }, 60)
    const lookups = [() => codes.find('d1'), () => codes.findByUid('u1'), () => codes.findByUserCode('c1')]
    clock.advance(59)
    for (const lookup of lookups) assert.notEqual(await lookup(), undefined)
    clock.advance(1)
    for (const lookup of lookups) assert.equal(await lookup(), undefined)
    await assert.rejects(codes.consume('d1'), isConsumeConflict('DeviceCode'))
  })

  test('oidc: a record upserted without expiresIn never expires', async () => {
    const { store, clock } = await stores(1)
    const clients = store.oidcAdapter('Client')
    await clients.upsert('client-1', { client_id: 'client-1' }, undefined as unknown as number)
    clock.advance(10 * 365 * 24 * 3600)
    assert.deepEqual(await clients.find('client-1'), { client_id: 'client-1' })
  })

  test('oidc: consume marks the record consumed (seconds) once; the second consume throws', async () => {
    const { store, clock } = await stores(1)
    const codes = store.oidcAdapter('AuthorizationCode')
    await codes.upsert('code-1', { jti: 'code-1', grantId: 'g' }, 60)
    clock.advance(5)
    await codes.consume('code-1')
    assert.deepEqual(await codes.find('code-1'), {
      jti: 'code-1',
      grantId: 'g',
      consumed: seconds(START) + 5,
    })
    await assert.rejects(codes.consume('code-1'), isConsumeConflict('AuthorizationCode'))
    await assert.rejects(codes.consume('never-issued'), isConsumeConflict('AuthorizationCode'))
    await assert.rejects(
      store.oidcAdapter('RefreshToken').consume('code-1'),
      isConsumeConflict('RefreshToken'),
      'consume is scoped to the model',
    )
  })

  test('oidc: upsert keeps a consumed mark passed back in the payload and clears it otherwise', async () => {
    const { store } = await stores(1)
    const tokens = store.oidcAdapter('RefreshToken')
    await tokens.upsert('rt', { jti: 'rt', consumed: 1234 }, 60)
    assert.deepEqual(await tokens.find('rt'), { jti: 'rt', consumed: 1234 })
    await assert.rejects(tokens.consume('rt'), isConsumeConflict('RefreshToken'))
    await tokens.upsert('rt', { jti: 'rt' }, 60)
    assert.deepEqual(await tokens.find('rt'), { jti: 'rt' })
    await tokens.consume('rt')
  })

  test('oidc: destroy removes that record only', async () => {
    const { store } = await stores(1)
    const tokens = store.oidcAdapter('AccessToken')
    await tokens.upsert('a', { grantId: 'g' }, 60)
    await tokens.upsert('b', { grantId: 'g' }, 60)
    await tokens.destroy('a')
    await tokens.destroy('never-issued')
    assert.equal(await tokens.find('a'), undefined)
    assert.deepEqual(await tokens.find('b'), { grantId: 'g' })
  })

  test('oidc: revokeByGrantId deletes the grant across every model and nothing else', async () => {
    const { store } = await stores(1)
    const models = ['Grant', 'AuthorizationCode', 'AccessToken', 'RefreshToken', 'Session']
    for (const model of models) {
      await store.oidcAdapter(model).upsert('revoked', { grantId: 'grant-a' }, 60)
      await store.oidcAdapter(model).upsert('kept', { grantId: 'grant-b' }, 60)
    }
    await store.oidcAdapter('AccessToken').revokeByGrantId('grant-a')
    for (const model of models) {
      assert.equal(await store.oidcAdapter(model).find('revoked'), undefined, model)
      assert.deepEqual(await store.oidcAdapter(model).find('kept'), { grantId: 'grant-b' }, model)
    }
  })

  test('oidc: findWithGrant reads the record with its grant and its user; each undefined when absent or expired', async () => {
    const { store, clock } = await stores(1)
    const alice = await store.users.create({
      username: 'alice',
      passwordHash: undefined,
      externalId: undefined,
      claims: { email: 'a@example.com' },
    })
    const tokens = store.oidcAdapter('RefreshToken')
    await store.oidcAdapter('Grant').upsert('g1', { jti: 'g1', accountId: alice.id }, 30)
    await tokens.upsert('rt', { jti: 'rt', grantId: 'g1', accountId: alice.id }, 600)
    await tokens.consume('rt')
    const consumed = seconds(START)
    assert.deepEqual(await tokens.findWithGrant('rt'), {
      withinLimit: true,
      found: {
        record: { jti: 'rt', grantId: 'g1', accountId: alice.id, consumed },
        grant: { jti: 'g1', accountId: alice.id },
        user: alice,
      },
    })
    await tokens.upsert('other', { jti: 'other', grantId: 'g-none', accountId: 'nobody' }, 600)
    assert.deepEqual((await tokens.findWithGrant('other')).found, {
      record: { jti: 'other', grantId: 'g-none', accountId: 'nobody' },
      grant: undefined,
      user: undefined,
    })
    clock.advance(30)
    assert.equal((await tokens.findWithGrant('rt')).found?.grant, undefined, 'the grant expired')
    const otherModel = await store.oidcAdapter('AuthorizationCode').findWithGrant('rt')
    assert.equal(otherModel.found, undefined, 'another model')
    assert.equal((await tokens.findWithGrant('never-issued')).found, undefined)
  })

  test('oidc: findWithGrant with a count counts like hit, found or not, in one window shared with hit', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    await first.oidcAdapter('RefreshToken').upsert('rt', { jti: 'rt' }, 600)
    const count = { bucket: 'token:203.0.113.7', limit: 4, windowSeconds: 60 }
    assert.equal(await first.hit(count.bucket, count.limit, count.windowSeconds), true)
    const reads = []
    for (const [store, id] of [
      [first, 'rt'],
      [second, 'unknown'],
      [second, 'rt'],
      [first, 'unknown'],
    ] as const)
      reads.push(await store.oidcAdapter('RefreshToken').findWithGrant(id, count))
    assert.deepEqual(
      reads.map((read) => [read.withinLimit, read.found?.record.jti]),
      [
        [true, 'rt'],
        [true, undefined],
        [true, 'rt'],
        [false, undefined],
      ],
    )
    assert.equal(await second.hit(count.bucket, count.limit, count.windowSeconds), false)
  })

  test('oidc: 40 concurrent findWithGrant counts over two stores with limit 15: exactly 15 within', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    const count = { bucket: 'token:198.51.100.1', limit: 15, windowSeconds: 60 }
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 ? first : second).oidcAdapter('AuthorizationCode').findWithGrant(`code-${i}`, count),
      ),
    )
    assert.equal(results.filter((read) => read.withinLimit).length, 15)
  })

  test('oidc: revokeAccountGrants deletes the grants of one client, or every record of the account', async () => {
    const { store } = await stores(1)
    const put = (model: string, id: string, payload: Record<string, unknown>) =>
      store.oidcAdapter(model).upsert(id, payload, 60)
    const grant = (id: string, accountId: string, clientId: string) =>
      Promise.all([
        put('Grant', id, { jti: id, accountId, clientId }),
        put('RefreshToken', `rt-${id}`, { jti: `rt-${id}`, grantId: id, accountId, clientId }),
        put('AuthorizationCode', `code-${id}`, { jti: `code-${id}`, grantId: id, accountId, clientId }),
      ])
    await grant('g-alice-a', 'alice', 'client-a')
    await grant('g-alice-b', 'alice', 'client-b')
    await grant('g-bob-a', 'bob', 'client-a')
    await put('Session', 'sess-alice', { jti: 'sess-alice', uid: 'u', accountId: 'alice' })
    const alive = async () => {
      const ids = ['g-alice-a', 'g-alice-b', 'g-bob-a']
      const records = ids.flatMap((id) => [
        ['Grant', id],
        ['RefreshToken', `rt-${id}`],
        ['AuthorizationCode', `code-${id}`],
      ])
      const found = await Promise.all(
        [...records, ['Session', 'sess-alice']].map(async ([model, id]) =>
          (await store.oidcAdapter(model as string).find(id as string)) ? id : undefined,
        ),
      )
      return found.filter(Boolean)
    }
    assert.equal(await store.revokeAccountGrants('alice', 'client-a'), 1)
    assert.deepEqual(await alive(), [
      'g-alice-b',
      'rt-g-alice-b',
      'code-g-alice-b',
      'g-bob-a',
      'rt-g-bob-a',
      'code-g-bob-a',
      'sess-alice',
    ])
    assert.equal(await store.revokeAccountGrants('alice', 'unknown-client'), 0)
    assert.equal(await store.revokeAccountGrants('alice'), 1)
    assert.deepEqual(await alive(), ['g-bob-a', 'rt-g-bob-a', 'code-g-bob-a'])
    assert.equal(await store.revokeAccountGrants('nul\0id'), 0)
  })

  test('oidc: revokeClient deletes the client and every grant to it, whatever the account; listOidcRecords', async () => {
    const { store } = await stores(1)
    const put = (model: string, id: string, payload: Record<string, unknown>) =>
      store.oidcAdapter(model).upsert(id, payload, 60)
    const grant = (id: string, accountId: string, clientId: string) =>
      Promise.all([
        put('Grant', id, { jti: id, accountId, clientId }),
        put('RefreshToken', `rt-${id}`, { jti: `rt-${id}`, grantId: id, accountId, clientId }),
      ])
    await put('Client', 'client-a', { client_id: 'client-a' })
    await put('Client', 'client-b', { client_id: 'client-b' })
    await grant('g-alice-a', 'alice', 'client-a')
    await grant('g-bob-a', 'bob', 'client-a')
    await grant('g-alice-b', 'alice', 'client-b')
    const ids = (payloads: Record<string, unknown>[]) =>
      payloads.map((payload) => payload.jti ?? payload.client_id).sort()
    assert.deepEqual(ids(await store.listOidcRecords('Client')), ['client-a', 'client-b'])
    assert.equal(await store.revokeClient('client-a'), 2)
    assert.deepEqual(ids(await store.listOidcRecords('Client')), ['client-b'])
    assert.deepEqual(ids(await store.listOidcRecords('Grant')), ['g-alice-b'])
    for (const id of ['rt-g-alice-a', 'rt-g-bob-a'])
      assert.equal(await store.oidcAdapter('RefreshToken').find(id), undefined, id)
    assert.ok(await store.oidcAdapter('RefreshToken').find('rt-g-alice-b'))
    assert.equal(await store.revokeClient('client-a'), 0)
  })

  test('oidc: 20 concurrent consumes of one code over two stores: exactly one succeeds', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    await first.oidcAdapter('AuthorizationCode').upsert('raced', { jti: 'raced' }, 60)
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? first : second).oidcAdapter('AuthorizationCode').consume('raced'),
      ),
    )
    assert.equal(results.filter((result) => result.status === 'fulfilled').length, 1)
    for (const result of results.filter((result) => result.status === 'rejected')) {
      assert.ok(isConsumeConflict('AuthorizationCode')(result.reason), String(result.reason))
    }
  })

  test('oidcTransaction: consumes and upserts in order, in one step', async () => {
    const { store, clock } = await stores(1)
    const tokens = store.oidcAdapter('RefreshToken')
    await tokens.upsert('rt-0', { jti: 'rt-0', grantId: 'g' }, 600)
    clock.advance(7)
    await store.oidcTransaction([
      { kind: 'consume', model: 'RefreshToken', id: 'rt-0' },
      {
        kind: 'upsert',
        model: 'RefreshToken',
        id: 'rt-1',
        payload: { jti: 'rt-1', grantId: 'g' },
        expiresIn: 60,
      },
      {
        kind: 'upsert',
        model: 'Link',
        id: 'rt-0',
        payload: { successor: 'rt-1', grantId: 'g' },
        expiresIn: 30,
      },
    ])
    assert.deepEqual(await tokens.find('rt-0'), { jti: 'rt-0', grantId: 'g', consumed: seconds(START) + 7 })
    assert.deepEqual(await tokens.find('rt-1'), { jti: 'rt-1', grantId: 'g' })
    clock.advance(30)
    assert.equal(
      await store.oidcAdapter('Link').find('rt-0'),
      undefined,
      'each upsert keeps its own lifetime',
    )
    assert.deepEqual(await tokens.find('rt-1'), { jti: 'rt-1', grantId: 'g' })
    await tokens.revokeByGrantId('g')
    assert.equal(await tokens.find('rt-1'), undefined)
  })

  test('oidcTransaction: a consume that changes nothing throws and writes nothing, earlier writes included', async () => {
    const { store, clock } = await stores(1)
    const tokens = store.oidcAdapter('RefreshToken')
    await tokens.upsert('used', { jti: 'used' }, 600)
    await tokens.upsert('open', { jti: 'open' }, 600)
    await tokens.upsert('expiring', { jti: 'expiring' }, 5)
    await tokens.consume('used')
    clock.advance(5)
    for (const failing of ['used', 'expiring', 'never-issued']) {
      await assert.rejects(
        store.oidcTransaction([
          { kind: 'consume', model: 'RefreshToken', id: 'open' },
          { kind: 'upsert', model: 'RefreshToken', id: 'next', payload: { jti: 'next' }, expiresIn: 60 },
          { kind: 'consume', model: 'RefreshToken', id: failing },
        ]),
        isConsumeConflict('RefreshToken'),
        failing,
      )
      assert.deepEqual(await tokens.find('open'), { jti: 'open' }, failing)
      assert.equal(await tokens.find('next'), undefined, failing)
    }
  })

  test('oidcTransaction: an audit write is appended with the other writes, and not when a consume fails', async () => {
    const { store } = await stores(1)
    const codes = store.oidcAdapter('AuthorizationCode')
    await codes.upsert('code', { jti: 'code' }, 60)
    const redeem = (code: string, at: number) =>
      store.oidcTransaction([
        { kind: 'consume', model: 'AuthorizationCode', id: code },
        {
          kind: 'upsert',
          model: 'RefreshToken',
          id: `rt-${at}`,
          payload: { jti: `rt-${at}` },
          expiresIn: 60,
        },
        { kind: 'audit', event: { at, type: 'token.issued', data: { clientId: 'c' } } },
      ])
    await redeem('code', 1)
    await assert.rejects(redeem('code', 2), isConsumeConflict('AuthorizationCode'))
    assert.deepEqual(await store.audit.recent(10), [{ at: 1, type: 'token.issued', data: { clientId: 'c' } }])
    assert.equal(await store.oidcAdapter('RefreshToken').find('rt-2'), undefined)
  })

  test('oidcTransaction: 20 concurrent rotations of one token over two stores: exactly one is stored', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    await first.oidcAdapter('RefreshToken').upsert('raced', { jti: 'raced' }, 60)
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? first : second).oidcTransaction([
          { kind: 'consume', model: 'RefreshToken', id: 'raced' },
          {
            kind: 'upsert',
            model: 'RefreshToken',
            id: `next-${i}`,
            payload: { jti: `next-${i}` },
            expiresIn: 60,
          },
        ]),
      ),
    )
    const won = results.flatMap((result, i) => (result.status === 'fulfilled' ? [i] : []))
    assert.equal(won.length, 1)
    for (const result of results.filter((result) => result.status === 'rejected')) {
      assert.ok(isConsumeConflict('RefreshToken')(result.reason), String(result.reason))
    }
    const stored = await Promise.all(
      results.map((_, i) => first.oidcAdapter('RefreshToken').find(`next-${i}`)),
    )
    assert.deepEqual(
      stored.flatMap((payload, i) => (payload ? [i] : [])),
      won,
    )
  })

  test('oidc: hostile ids and payloads are stored and returned intact', async () => {
    const { store } = await stores(1)
    const adapter = store.oidcAdapter('RefreshToken')
    const hostileIds = [
      `quote'; DROP TABLE oidc_records; --`,
      'double"quote\\backslash',
      'nul\0inside',
      'x'.repeat(100_000),
      'émoji 🔑 ключ 鍵',
      '\ud800',
      '\udbff',
      '',
      '%_*?',
    ]
    for (const [index, id] of hostileIds.entries()) {
      const payload = {
        jti: id,
        grantId: id,
        text: `${id} \u0000 \u2028 🧪`,
        nested: { list: [id, null, 1.5] },
      }
      await adapter.upsert(id, payload, 60)
      assert.deepEqual(await adapter.find(id), payload, `id #${index}`)
    }
    for (const [index, id] of hostileIds.entries()) {
      assert.equal((await adapter.find(id))?.jti, id, `id #${index} kept apart from the others`)
      await adapter.consume(id)
      await adapter.revokeByGrantId(id)
      assert.equal(await adapter.find(id), undefined, `id #${index}`)
    }
  })

  test('hit: counts within the window, per bucket, and starts again in the next window', async () => {
    const { store, clock } = await stores(1)
    clock.ms = START + 10_000
    const hits = async (bucket: string, count: number) => {
      const results: boolean[] = []
      for (let i = 0; i < count; i++) results.push(await store.hit(bucket, 3, 60))
      return results
    }
    assert.deepEqual(await hits('sign-in:alice', 4), [true, true, true, false])
    assert.deepEqual(await hits('sign-in:bob', 1), [true])
    clock.advance(49)
    assert.deepEqual(await hits('sign-in:alice', 1), [false], 'still the same fixed window')
    clock.advance(1)
    assert.deepEqual(await hits('sign-in:alice', 4), [true, true, true, false])
  })

  test('hit: 40 concurrent hits over two stores with limit 15: exactly 15 are allowed', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? first : second).hit('register:203.0.113.7', 15, 60)),
    )
    assert.equal(results.filter(Boolean).length, 15)
  })

  test('users: create, find by id, username and external id, list; usernames are unique', async () => {
    const { store, clock } = await stores(1)
    const alice = await store.users.create({
      username: 'alice',
      passwordHash: '$scrypt$ln=17,r=8,p=1$c2FsdA$aGFzaA',
      externalId: undefined,
      claims: { email: 'alice@example.com', name: 'Ålice 🧪' },
    })
    clock.advance(1)
    const bob = await store.users.create({
      username: "bob'; --",
      passwordHash: undefined,
      externalId: 'https://idp.example.com|sub-42',
      claims: {},
    })
    assert.equal(alice.createdAt, seconds(START))
    assert.notEqual(alice.id, bob.id)
    assert.deepEqual(await store.users.findById(alice.id), alice)
    assert.deepEqual(await store.users.findByUsername("bob'; --"), bob)
    assert.deepEqual(await store.users.findByExternalId('https://idp.example.com|sub-42'), bob)
    assert.equal(await store.users.findByUsername('carol'), undefined)
    assert.equal(await store.users.findById(randomUUID()), undefined)
    assert.deepEqual(await store.users.list(), [alice, bob])
    await assert.rejects(
      store.users.create({ username: 'alice', passwordHash: undefined, externalId: undefined, claims: {} }),
    )
    assert.equal((await store.users.list()).length, 2)
  })

  test('users: one username rule on write and lookup (A-Z folded, surrounding space trimmed)', async () => {
    const { store } = await stores(1)
    const okta = await store.users.create({
      username: 'okta:00uAbC123XyZ',
      passwordHash: undefined,
      externalId: 'https://okta|00uAbC123XyZ',
      claims: {},
    })
    assert.equal(okta.username, 'okta:00uabc123xyz')
    assert.deepEqual(await store.users.findByUsername(' okta:00uAbC123XyZ '), okta)
    assert.deepEqual(await store.users.findByUsername('OKTA:00UABC123XYZ'), okta)
    // Only ASCII letters fold: the databases and the code agree on every other character.
    const accented = await store.users.create({
      username: 'corp:Élodie',
      passwordHash: undefined,
      externalId: undefined,
      claims: {},
    })
    assert.equal(accented.username, 'corp:Élodie')
    assert.deepEqual(await store.users.findByUsername('CORP:Élodie'), accented)
    assert.equal(await store.users.findByUsername('corp:élodie'), undefined)
    await assert.rejects(
      store.users.create({
        username: 'OKTA:00UABC123XYZ',
        passwordHash: undefined,
        externalId: undefined,
        claims: {},
      }),
      { message: 'storage: a user named okta:00uabc123xyz already exists' },
    )
  })

  test('users: NUL is refused in stored text and finds nothing in lookups', async () => {
    const { store } = await stores(1)
    await assert.rejects(
      store.users.create({ username: 'a\0b', passwordHash: undefined, externalId: undefined, claims: {} }),
      { message: 'storage: username contains a NUL character' },
    )
    assert.equal(await store.users.findByUsername('a\0b'), undefined)
    assert.equal(await store.users.findByExternalId('a\0b'), undefined)
    assert.equal(await store.users.findById('a\0b'), undefined)
    const carol = await store.users.create({
      username: 'carol',
      passwordHash: undefined,
      externalId: undefined,
      claims: { note: 'nul \0 in JSON is fine' },
    })
    assert.deepEqual(await store.users.findById(carol.id), carol)
  })

  test('users: setPassword, setDisabled (now) and back, delete with the consents; unknown ids give false', async () => {
    const { store, clock } = await stores(1)
    const user = await store.users.create({
      username: 'dora',
      passwordHash: 'old-hash',
      externalId: undefined,
      claims: {},
    })
    assert.equal(user.disabledAt, undefined)
    await store.consents.save({ userId: user.id, clientId: 'c', resources: {}, grantedAt: 1 })
    await store.consents.save({ userId: 'other', clientId: 'c', resources: {}, grantedAt: 1 })
    assert.equal(await store.users.setPassword(user.id, 'new-hash'), true)
    clock.advance(7)
    assert.equal(await store.users.setDisabled(user.id, true), true)
    assert.deepEqual(await store.users.findById(user.id), {
      ...user,
      passwordHash: 'new-hash',
      disabledAt: seconds(START) + 7,
    })
    assert.equal((await store.users.list())[0]?.disabledAt, seconds(START) + 7)
    assert.equal(await store.users.setDisabled(user.id, false), true)
    assert.deepEqual(await store.users.findByUsername('dora'), { ...user, passwordHash: 'new-hash' })
    for (const id of [randomUUID(), 'nul\0id']) {
      assert.equal(await store.users.setPassword(id, 'h'), false)
      assert.equal(await store.users.setDisabled(id, true), false)
      assert.equal(await store.users.delete(id), false)
    }
    assert.equal(await store.users.delete(user.id), true)
    assert.equal(await store.users.findById(user.id), undefined)
    assert.deepEqual(await store.consents.listByUser(user.id), [])
    assert.equal((await store.consents.listByUser('other')).length, 1)
    assert.equal(await store.users.delete(user.id), false)
  })

  test('revocations: per client or for every client, the latest time, kept keepSeconds, seen by every store', async () => {
    const {
      clock,
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    const client = 'https://app.example.com/client.json'
    assert.equal(await second.revocations.revokedAt('alice', client), undefined)
    await first.revocations.add('alice', client, 100)
    const at = seconds(START)
    assert.equal(await second.revocations.revokedAt('alice', client), at)
    assert.equal(await second.revocations.revokedAt('alice', 'other-client'), undefined)
    assert.equal(await second.revocations.revokedAt('alice', undefined), undefined)
    assert.equal(await second.revocations.revokedAt('bob', client), undefined)
    clock.advance(10)
    await second.revocations.add('alice', undefined, 50)
    assert.equal(await first.revocations.revokedAt('alice', 'other-client'), at + 10, 'every client')
    assert.equal(await first.revocations.revokedAt('alice', undefined), at + 10)
    clock.advance(20)
    await first.revocations.add('alice', client, 100)
    assert.equal(await first.revocations.revokedAt('alice', client), at + 30, 'the latest wins')
    clock.advance(30)
    assert.equal(await first.revocations.revokedAt('alice', 'other-client'), undefined, 'expired')
    assert.equal(await first.revocations.revokedAt('alice', client), at + 30)
    clock.advance(70)
    assert.equal(await first.revocations.revokedAt('alice', client), undefined)
    assert.equal(await first.revocations.revokedAt('nul\0', 'x'), undefined)
  })

  test('revocations: addClient refuses the tokens of one client for every subject', async () => {
    const {
      clock,
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    await first.revocations.addClient('client-a', 100)
    const at = seconds(START)
    assert.equal(await second.revocations.revokedAt('alice', 'client-a'), at)
    assert.equal(await second.revocations.revokedAt('bob', 'client-a'), at)
    assert.equal(await second.revocations.revokedAt('alice', 'client-b'), undefined)
    assert.equal(await second.revocations.revokedAt('alice', undefined), undefined)
    clock.advance(10)
    await first.revocations.add('alice', 'client-a', 100)
    assert.equal(await second.revocations.revokedAt('alice', 'client-a'), at + 10, 'the latest wins')
    assert.equal(await second.revocations.revokedAt('bob', 'client-a'), at)
    clock.advance(100)
    assert.equal(await second.revocations.revokedAt('bob', 'client-a'), undefined, 'expired')
  })

  test("consents: revokeClient forgets every user's consent to that client only", async () => {
    const { store } = await stores(1)
    for (const [userId, clientId] of [
      ['u1', 'c'],
      ['u2', 'c'],
      ['u1', 'd'],
    ] as const)
      await store.consents.save({ userId, clientId, resources: {}, grantedAt: 1 })
    assert.equal(await store.consents.revokeClient('c'), 2)
    assert.deepEqual(
      (await store.consents.listByUser('u1')).map((c) => c.clientId),
      ['d'],
    )
    assert.deepEqual(await store.consents.listByUser('u2'), [])
    assert.equal(await store.consents.revokeClient('nul\0'), 0)
  })

  test('consents: save replaces, find, listByUser, revoke says whether there was one', async () => {
    const { store } = await stores(1)
    const first = {
      userId: 'u1',
      clientId: 'https://app.example.com/cimd.json',
      resources: {},
      grantedAt: 10,
    }
    await store.consents.save({ ...first, resources: { 'https://mcp.example.com/': ['read'] } })
    await store.consents.save({
      ...first,
      resources: { 'https://mcp.example.com/': ['read', 'write'] },
      grantedAt: 20,
    })
    await store.consents.save({ userId: 'u1', clientId: 'dcr-client', resources: { r: [] }, grantedAt: 15 })
    await store.consents.save({
      userId: 'u2',
      clientId: 'dcr-client',
      resources: { r: ['x'] },
      grantedAt: 16,
    })
    const replaced = { ...first, resources: { 'https://mcp.example.com/': ['read', 'write'] }, grantedAt: 20 }
    assert.deepEqual(await store.consents.find('u1', first.clientId), replaced)
    assert.equal(await store.consents.find('u1', 'unknown'), undefined)
    assert.deepEqual(await store.consents.listByUser('u1'), [
      { userId: 'u1', clientId: 'dcr-client', resources: { r: [] }, grantedAt: 15 },
      replaced,
    ])
    assert.equal(await store.consents.revoke('u1', first.clientId), true)
    assert.equal(await store.consents.revoke('u1', first.clientId), false)
    assert.equal(await store.consents.find('u1', first.clientId), undefined)
    assert.equal((await store.consents.listByUser('u2')).length, 1)
    assert.deepEqual(await store.consents.listByUser('nobody'), [])
  })

  test('keys: insert, list, activate retires the previous active key, deleteExpired', async () => {
    const { store } = await stores(1)
    await store.keys.insert(key('k1', { state: 'active', createdAt: 100 }))
    await store.keys.insert(key('k2', { createdAt: 200 }))
    assert.deepEqual(await store.keys.list(), [
      key('k2', { createdAt: 200 }),
      key('k1', { state: 'active', createdAt: 100 }),
    ])
    await store.keys.activate('k2', 5000)
    assert.deepEqual(await store.keys.list(), [
      key('k2', { state: 'active', createdAt: 200 }),
      key('k1', { createdAt: 100, retireAfter: 5000 }),
    ])
    await store.keys.activate('k2', 9999)
    assert.equal((await store.keys.list())[1]?.retireAfter, 5000, 'activating the active key retires nothing')
    await store.keys.retain('k2', 9000)
    assert.equal((await store.keys.list())[0]?.retireAfter, undefined, 'an active key is never given an end')
    await store.keys.retain('k1', 4000)
    assert.equal((await store.keys.list())[1]?.retireAfter, 5000, 'retain never shortens')
    await store.keys.retain('k1', 6000)
    assert.equal((await store.keys.list())[1]?.retireAfter, 6000)
    await store.keys.retain('k1', 5000)
    assert.equal(await store.keys.deleteExpired(5999), 0)
    assert.equal(await store.keys.deleteExpired(6000), 1)
    assert.deepEqual(
      (await store.keys.list()).map((k) => k.kid),
      ['k2'],
    )
  })

  test('keys: activating an unknown kid changes nothing; a second active key is refused', async () => {
    const { store } = await stores(1)
    await store.keys.insert(key('k1', { state: 'active' }))
    await assert.rejects(store.keys.activate('missing', 5000), {
      message: 'storage: no signing key with this kid',
    })
    assert.deepEqual(await store.keys.list(), [key('k1', { state: 'active' })])
    await assert.rejects(store.keys.insert(key('k2', { state: 'active' })))
    assert.deepEqual(
      (await store.keys.list()).map((k) => k.kid),
      ['k1'],
    )
  })

  test('keys: racing activations over two stores leave exactly one active key', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    await first.keys.insert(key('old', { state: 'active' }))
    const candidates = Array.from({ length: 6 }, (_, i) => `new-${i}`)
    for (const kid of candidates) await first.keys.insert(key(kid))
    await Promise.allSettled(candidates.map((kid, i) => (i % 2 ? first : second).keys.activate(kid, 5000)))
    const active = (await first.keys.list()).filter((k) => k.state === 'active')
    assert.equal(active.length, 1)
    assert.ok(candidates.includes(active[0]?.kid ?? ''), 'one of the new keys won')
  })

  test('connections: save, find, listByUser, list, reconnect raises the version and makes it active again, delete', async () => {
    const { store, clock } = await stores(1)
    const sealed = { sealed: 'v1.k1.iv.tag.ct', keyId: 'k1', expiresAt: 2000, scope: 'repo' }
    const saved = await store.connections.save({ userId: 'alice', connectionId: 'github', ...sealed })
    assert.deepEqual(saved, {
      userId: 'alice',
      connectionId: 'github',
      ...sealed,
      status: 'active',
      version: 1,
      leaseUntil: undefined,
      createdAt: seconds(clock.ms),
      updatedAt: seconds(clock.ms),
    })
    await store.connections.save({
      userId: 'alice',
      connectionId: 'google',
      sealed: 'x',
      keyId: 'k1',
      expiresAt: undefined,
      scope: undefined,
    })
    await store.connections.save({ userId: 'bob', connectionId: 'github', ...sealed })
    assert.deepEqual(await store.connections.find('alice', 'github'), saved)
    assert.equal(await store.connections.find('alice', 'jira'), undefined)
    assert.equal(await store.connections.find('alice\0', 'github'), undefined)
    assert.deepEqual(
      (await store.connections.listByUser('alice')).map((c) => c.connectionId),
      ['github', 'google'],
    )
    assert.deepEqual(
      (await store.connections.list()).map((c) => `${c.userId}/${c.connectionId}`),
      ['alice/github', 'alice/google', 'bob/github'],
    )
    assert.deepEqual(
      (await store.connections.list('github')).map((c) => c.userId),
      ['alice', 'bob'],
    )
    const broken = await store.connections.update('alice', 'github', 1, { status: 'broken', leaseUntil: 99 })
    assert.equal(broken?.status, 'broken')
    clock.advance(10)
    const again = await store.connections.save({
      userId: 'alice',
      connectionId: 'github',
      ...sealed,
      sealed: 'new',
    })
    assert.deepEqual(
      [again.status, again.version, again.leaseUntil, again.sealed, again.updatedAt],
      ['active', 3, undefined, 'new', seconds(clock.ms)],
    )
    assert.equal(await store.connections.delete('alice', 'github'), true)
    assert.equal(await store.connections.delete('alice', 'github'), false)
    assert.equal(await store.connections.find('alice', 'github'), undefined)
  })

  test('connections: update is a compare-and-set on the version; only the named columns change', async () => {
    const { store } = await stores(1)
    const row = await store.connections.save({
      userId: 'alice',
      connectionId: 'github',
      sealed: 'a',
      keyId: 'k1',
      expiresAt: 100,
      scope: 'repo',
    })
    const leased = await store.connections.update('alice', 'github', row.version, { leaseUntil: 500 })
    assert.deepEqual(leased, { ...row, leaseUntil: 500, version: row.version + 1 })
    assert.equal(await store.connections.update('alice', 'github', row.version, { sealed: 'b' }), undefined)
    const refreshed = await store.connections.update('alice', 'github', row.version + 1, {
      sealed: 'b',
      keyId: 'k2',
      expiresAt: undefined,
      leaseUntil: undefined,
    })
    assert.deepEqual(
      [refreshed?.sealed, refreshed?.keyId, refreshed?.expiresAt, refreshed?.leaseUntil, refreshed?.scope],
      ['b', 'k2', undefined, undefined, 'repo'],
    )
    assert.equal(await store.connections.update('nobody', 'github', 1, { sealed: 'c' }), undefined)
  })

  test('connections: 20 concurrent updates of one version over two stores: exactly one wins', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    const row = await first.connections.save({
      userId: 'alice',
      connectionId: 'github',
      sealed: 'a',
      keyId: 'k1',
      expiresAt: 100,
      scope: undefined,
    })
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? first : second).connections.update('alice', 'github', row.version, { leaseUntil: i }),
      ),
    )
    assert.equal(results.filter((result) => result !== undefined).length, 1)
    assert.equal((await first.connections.find('alice', 'github'))?.version, row.version + 1)
  })

  test('connections: deleting a user deletes their connections', async () => {
    const { store } = await stores(1)
    const user = await store.users.create({
      username: 'carol',
      passwordHash: undefined,
      externalId: undefined,
      claims: {},
    })
    await store.connections.save({
      userId: user.id,
      connectionId: 'github',
      sealed: 'a',
      keyId: 'k1',
      expiresAt: undefined,
      scope: undefined,
    })
    await store.users.delete(user.id)
    assert.deepEqual(await store.connections.listByUser(user.id), [])
  })

  test('audit: append, then recent returns the newest first, up to the limit', async () => {
    const { store } = await stores(1)
    const events = Array.from({ length: 5 }, (_, i) => ({
      at: 1000 + i,
      type: i % 2 ? 'login.failed' : 'token.issued',
      data: { i, client: 'ĉlient "x"' },
    }))
    for (const event of events) await store.audit.append(event)
    assert.deepEqual(await store.audit.recent(3), events.slice(2).reverse())
    assert.deepEqual(await store.audit.recent(10), [...events].reverse())
  })

  test('audit: prune deletes the events before a time, then all but the newest ones', async () => {
    const { store } = await stores(1)
    const events = Array.from({ length: 8 }, (_, i) => ({ at: 1000 + i, type: 'token.issued', data: { i } }))
    for (const event of events) await store.audit.append(event)
    assert.equal(await store.audit.prune(1002, 100), 2)
    assert.deepEqual(await store.audit.recent(10), events.slice(2).reverse())
    assert.equal(await store.audit.prune(0, 3), 3)
    assert.deepEqual(await store.audit.recent(10), events.slice(5).reverse())
    assert.equal(await store.audit.prune(0, 3), 0, 'nothing past the bound: nothing deleted')
    await store.audit.append({ at: 2000, type: 'login.failed', data: {} })
    assert.deepEqual(
      (await store.audit.recent(10)).map((event) => event.at),
      [2000, 1007, 1006, 1005],
      'appending after a prune keeps the order',
    )
  })

  test('client usage: touch keeps the latest time per client, shared by every store', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    const cimd = 'https://app.example/client.json?ĉ="x"'
    await first.clientUsage.touch('dcr-1', 1000)
    await second.clientUsage.touch('dcr-1', 1500)
    await first.clientUsage.touch('dcr-1', 1200)
    await second.clientUsage.touch(cimd, 900)
    assert.deepEqual(
      await first.clientUsage.list(),
      new Map([
        ['dcr-1', 1500],
        [cimd, 900],
      ]),
    )
    assert.deepEqual(await second.clientUsage.list(), await first.clientUsage.list())
  })

  test('migrations: reopening keeps the data; concurrent first opens of one location all succeed', async () => {
    const location = await harness.fresh()
    const concurrent = (await Promise.all([location.open(), location.open(), location.open()])).map(track)
    const [writer, ...readers] = concurrent
    assert.ok(writer)
    const user = await writer.users.create({
      username: 'kept',
      passwordHash: undefined,
      externalId: undefined,
      claims: {},
    })
    await writer.oidcAdapter('Grant').upsert('grant', { accountId: user.id }, 3600)
    for (const reader of readers) assert.deepEqual(await reader.users.findById(user.id), user)
    await Promise.all(concurrent.map((store) => store.close()))
    opened.length = 0
    const reopened = track(await location.open())
    assert.deepEqual(await reopened.users.findById(user.id), user)
    assert.deepEqual(await reopened.oidcAdapter('Grant').find('grant'), { accountId: user.id })
  })

  test('two stores on one location see each other’s writes', async () => {
    const {
      stores: [first, second],
    } = await stores(2)
    assert.ok(first && second)
    await first.oidcAdapter('Session').upsert('s', { uid: 'u' }, 60)
    assert.deepEqual(await second.oidcAdapter('Session').findByUid('u'), { uid: 'u' })
    await second.oidcAdapter('Session').destroy('s')
    assert.equal(await first.oidcAdapter('Session').find('s'), undefined)
    await second.consents.save({ userId: 'u', clientId: 'c', resources: {}, grantedAt: 1 })
    assert.equal((await first.consents.listByUser('u')).length, 1)
    await first.audit.append({ at: 1, type: 'seen', data: {} })
    assert.deepEqual(await second.audit.recent(1), [{ at: 1, type: 'seen', data: {} }])
  })
}
