import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import {
  AdminSessions,
  SESSION_IDLE_SECONDS,
  SESSION_MAX_SECONDS,
} from '../../src/auth-server/console/session.ts'
import { createLocalUser, disableUser } from '../../src/auth-server/index.ts'
import { openStore } from '../../src/storage/index.ts'

const ISSUER = 'https://gatehouse.example'

/** A response that only keeps its Set-Cookie header. */
function cookieJarResponse() {
  const headers = new Map<string, unknown>()
  const res = {
    getHeader: (name: string) => headers.get(name),
    setHeader: (name: string, value: unknown) => headers.set(name, value),
  } as unknown as ServerResponse
  return { res, cookies: () => (headers.get('set-cookie') as string[] | undefined) ?? [] }
}

const requestWith = (cookie: string) => ({ headers: { cookie } }) as IncomingMessage

test('console sessions: Strict __Host- cookie, idle and absolute timeouts, re-checked admin on every request', async (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: Date.UTC(2030, 0, 1) })
  const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-console-session-'))
  const store = await openStore(undefined, { dataDir })
  try {
    const alice = await createLocalUser(store, 'alice', 'correct horse battery staple')
    const sessions = new AdminSessions(store, ISSUER, ['ALICE'])
    const { res, cookies } = cookieJarResponse()
    await sessions.start(res, alice)
    const [setCookie = ''] = cookies()
    assert.match(
      setCookie,
      new RegExp(
        `^__Host-gatehouse-admin=[\\w-]{43}; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=${SESSION_MAX_SECONDS}$`,
      ),
    )
    const req = requestWith(setCookie.split(';')[0] as string)
    assert.equal((await sessions.find(req))?.user.id, alice.id)
    assert.equal(await sessions.find(requestWith(`__Host-gatehouse-admin=${'A'.repeat(43)}`)), undefined)
    assert.equal(
      await sessions.find(
        requestWith(`gatehouse-admin=${(setCookie.split(';')[0] as string).split('=')[1]}`),
      ),
      undefined,
      'the http name is another cookie',
    )

    // Idle: each request within the idle time keeps it; none for longer ends it.
    t.mock.timers.tick((SESSION_IDLE_SECONDS - 60) * 1000)
    assert.ok(await sessions.find(req))
    t.mock.timers.tick((SESSION_IDLE_SECONDS - 60) * 1000)
    assert.ok(await sessions.find(req), 'moved by the previous request')
    t.mock.timers.tick((SESSION_IDLE_SECONDS + 1) * 1000)
    assert.equal(await sessions.find(req), undefined, 'idle too long')

    // Absolute: however active, it ends SESSION_MAX_SECONDS after the sign-in.
    const active = cookieJarResponse()
    await sessions.start(active.res, alice)
    const activeReq = requestWith((active.cookies()[0] as string).split(';')[0] as string)
    for (let at = 0; at + SESSION_IDLE_SECONDS / 2 < SESSION_MAX_SECONDS; at += SESSION_IDLE_SECONDS / 2) {
      t.mock.timers.tick((SESSION_IDLE_SECONDS / 2) * 1000)
      assert.ok(await sessions.find(activeReq), `active at ${at}`)
    }
    t.mock.timers.tick((SESSION_IDLE_SECONDS / 2) * 1000)
    assert.equal(await sessions.find(activeReq), undefined, 'past the absolute limit')

    // Removed from the admins (a restart with another list), or disabled: the session no longer counts.
    const again = cookieJarResponse()
    await sessions.start(again.res, alice)
    const againReq = requestWith((again.cookies()[0] as string).split(';')[0] as string)
    assert.equal(await new AdminSessions(store, ISSUER, ['bob']).find(againReq), undefined)
    await disableUser(store, alice)
    assert.equal(await sessions.find(againReq), undefined)
  } finally {
    await store.close()
    await rm(dataDir, { recursive: true, force: true })
  }
})
