import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import {
  deferredWritesMiddleware,
  deferring,
  requestCached,
  withRequestCache,
} from '../../src/auth-server/request_cache.ts'
import { openStore } from '../../src/storage/open.ts'
import type { OidcAdapter } from '../../src/storage/store.ts'

const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-request-cache-'))
const store = await openStore(undefined, { dataDir })
after(async () => {
  await store.close()
  rmSync(dataDir, { recursive: true, force: true })
})

/** The real Session adapter, counting the reads that reach the store. */
function countingSessions() {
  const stored = store.oidcAdapter('Session')
  const reads = { count: 0 }
  const counted: OidcAdapter = {
    ...stored,
    find: (id) => {
      reads.count++
      return stored.find(id)
    },
    findByUid: (uid) => {
      reads.count++
      return stored.findByUid(uid)
    },
  }
  return { sessions: requestCached('Session', counted), reads }
}

const inRequest = <T>(work: () => Promise<T>) =>
  withRequestCache(work as unknown as (req: IncomingMessage, res: ServerResponse) => Promise<T>)(
    {} as IncomingMessage,
    {} as ServerResponse,
  )

test('findByUid: read once per request; a write of the model forgets it, and is seen', async () => {
  const { sessions, reads } = countingSessions()
  await sessions.upsert('s1', { jti: 's1', uid: 'u1' }, 60)
  await inRequest(async () => {
    assert.deepEqual(await sessions.findByUid('u1'), { jti: 's1', uid: 'u1' })
    assert.deepEqual(await sessions.findByUid('u1'), { jti: 's1', uid: 'u1' })
    assert.equal(reads.count, 1)
    await sessions.upsert('s1', { jti: 's1', uid: 'u2' }, 60)
    assert.equal(await sessions.findByUid('u1'), undefined, 'the uid moved')
    assert.deepEqual(await sessions.findByUid('u2'), { jti: 's1', uid: 'u2' })
    await sessions.destroy('s1')
    assert.equal(await sessions.findByUid('u2'), undefined, 'destroyed')
  })
})

test('findByUid: each request reads the store again; outside a request nothing is cached', async () => {
  const { sessions, reads } = countingSessions()
  await sessions.upsert('s2', { jti: 's2', uid: 'u3' }, 60)
  await inRequest(() => sessions.findByUid('u3'))
  // Another instance's write between two requests.
  await store.oidcAdapter('Session').upsert('s2', { jti: 's2', uid: 'u3', changed: true }, 60)
  assert.deepEqual(await inRequest(() => sessions.findByUid('u3')), { jti: 's2', uid: 'u3', changed: true })
  await sessions.findByUid('u3')
  await sessions.findByUid('u3')
  assert.equal(reads.count, 4)
})

test('a grant revoked within an authorization request takes the deferred records that name it with it', async () => {
  const defer = deferredWritesMiddleware('/authorize', store)
  const ctx = { path: '/authorize', remove() {} } as unknown as Parameters<typeof defer>[0]
  const codes = deferring('AuthorizationCode', store.oidcAdapter('AuthorizationCode'), store)
  const grants = deferring('Grant', store.oidcAdapter('Grant'), store)
  await inRequest(() =>
    defer(ctx, async () => {
      await codes.upsert('code-of-revoked', { grantId: 'grant-revoked', accountId: 'alice' }, 60)
      await codes.upsert('code-kept', { grantId: 'grant-kept', accountId: 'alice' }, 60)
      // A Grant's revocation deletes every model's records of the grant, the deferred code's too.
      await grants.revokeByGrantId('grant-revoked')
    }),
  )
  const stored = store.oidcAdapter('AuthorizationCode')
  assert.equal(await stored.find('code-of-revoked'), undefined)
  assert.deepEqual(await stored.find('code-kept'), { grantId: 'grant-kept', accountId: 'alice' })
})
