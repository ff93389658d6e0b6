import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { createClient } from '@redis/client'
import type { SessionLimits } from '../../src/gateway/sessions.ts'
import { RedisSessions } from '../../src/gateway/shared_sessions.ts'
import { openSharedRedis, type SharedRedis } from '../../src/storage/redis.ts'
import { eventually } from '../support/eventually.ts'

const REDIS = `${process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'}/7`
const LIMITS: SessionLimits = {
  maxSessions: 100,
  maxSessionsPerUser: 3,
  maxAnonymousSessions: 1,
  newSessionsPerUserPerMinute: 5,
  newSessionsPerMinute: 100,
}

/** A request whose end the registry waits for; `end()` plays the client going away. */
const request = () => {
  const events = new EventEmitter()
  return {
    once: (event: 'close', listener: () => void) => events.once(event, listener),
    end: () => events.emit('close'),
  }
}

let redis: SharedRedis
const prefix = `sessions-${randomBytes(4).toString('hex')}:`
/** Two instances' registries on one Redis, each with its own limits object as each process has. */
const instance = (limits: SessionLimits = LIMITS) =>
  new RedisSessions({ redis, limits, idleTimeoutSeconds: 900, busy: () => false })

before(async () => {
  redis = await openSharedRedis(REDIS, prefix, () => {})
})
after(async () => {
  await redis.close()
  const client = createClient({ url: REDIS })
  await client.connect()
  const keys = await client.keys(`${prefix}*`)
  if (keys.length > 0) await client.del(keys)
  await client.close()
})

describe('RedisSessions: one registry for every instance', () => {
  test("a session bound on one instance is its owner's on the other, and unknown to anyone else", async () => {
    const [a, b] = [instance(), instance()]
    assert.equal(await a.admit('alice', request()), undefined)
    await a.bind('s-owned', 'alice')
    assert.equal(await b.use('s-owned', 'alice'), 'ok')
    assert.equal(await b.use('s-owned', 'mallory'), 'unknown')
    assert.equal(await b.use('s-owned', undefined), 'unknown')
    assert.equal(await a.use('s-owned', 'alice'), 'ok')
    await b.delete('s-owned')
    assert.equal(await a.use('s-owned', 'alice'), 'unknown')
  })

  test('an anonymous session is claimed by the first token, then refused to others', async () => {
    const [a, b] = [instance(), instance()]
    assert.equal(await a.admit(undefined, request()), undefined)
    await a.bind('s-anonymous', undefined)
    assert.equal(await b.use('s-anonymous', 'bob'), 'ok')
    assert.equal(await a.use('s-anonymous', 'carol'), 'unknown')
    assert.equal(await a.use('s-anonymous', undefined), 'unknown')
    // Claimed, it no longer counts against the anonymous limit (1): another anonymous session fits.
    assert.equal(await b.admit(undefined, request()), undefined)
  })

  test('the per-user limit counts the sessions of every instance, and places still being opened', async () => {
    const [a, b] = [instance(), instance()]
    assert.equal(await a.admit('dave', request()), undefined)
    await a.bind('d1', 'dave')
    assert.equal(await b.admit('dave', request()), undefined)
    await b.bind('d2', 'dave')
    const pending = request()
    assert.equal(await a.admit('dave', pending), undefined)
    const refused = await b.admit('dave', request())
    assert.equal(refused?.error.code, 'too_many_sessions')
    // The admitted initialize ended without a session: its place is free again.
    // Freeing it is a Redis call after the request ends: admit (a refusal takes nothing) until it is done.
    pending.end()
    await eventually('the place to be freed', async () =>
      (await b.admit('dave', request())) === undefined ? true : undefined,
    )
  })

  test('new sessions per user per minute count across instances (429 with the wait)', async () => {
    const limits = { ...LIMITS, maxSessionsPerUser: 100 }
    const [a, b] = [instance(limits), instance(limits)]
    for (let i = 0; i < 5; i++) assert.equal(await (i % 2 ? a : b).admit('erin', request()), undefined)
    const refused = await a.admit('erin', request())
    assert.equal(refused?.error.code, 'too_many_new_sessions')
    assert.ok(refused && refused.retryAfterSeconds > 0 && refused.retryAfterSeconds <= 60)
  })

  test('idle sessions expire in Redis; one with a stream open on this instance is renewed', async () => {
    // Renewed halfway, so that a slow step on a loaded machine (up to 2 s) changes neither outcome.
    const idleSeconds = 4
    const streaming = new Set(['s-stream'])
    const a = new RedisSessions({
      redis,
      limits: LIMITS,
      idleTimeoutSeconds: idleSeconds,
      busy: (id) => streaming.has(id),
    })
    for (const id of ['s-stream', 's-quiet']) {
      assert.equal(await a.admit('frank', request()), undefined)
      await a.bind(id, 'frank')
    }
    await new Promise((resolve) => setTimeout(resolve, (idleSeconds * 1000) / 2))
    assert.deepEqual(a.idle(idleSeconds * 1000), [], 'Redis expires sessions: nothing for the reaper to end')
    // The quiet one expires 4 s after its binding (looked at without renewing it); the streaming one was
    // renewed 2 s later, so it outlives it.
    const exists = async (id: string) =>
      Number(await redis.script("return redis.call('EXISTS', KEYS[1])", [`session:${id}`], [])) === 1
    await eventually('the quiet session to expire', async () =>
      (await exists('s-quiet')) ? undefined : true,
    )
    assert.equal(await a.use('s-quiet', 'frank'), 'unknown')
    assert.equal(await a.use('s-stream', 'frank'), 'ok')
  })

  test('Redis unreachable: shared_state_unavailable, never an answer from memory', async () => {
    const broken: SharedRedis = {
      script: async () => {
        throw new Error('the client is closed')
      },
      setOnce: async () => false,
      hit: async () => false,
      close: async () => {},
    }
    const down = new RedisSessions({
      redis: broken,
      limits: LIMITS,
      idleTimeoutSeconds: 900,
      busy: () => false,
    })
    await assert.rejects(down.use('s', 'alice'), { code: 'shared_state_unavailable' })
    await assert.rejects(down.admit('alice', request()), { code: 'shared_state_unavailable' })
    await assert.rejects(down.bind('s', 'alice'), { code: 'shared_state_unavailable' })
  })
})
