import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect as tcpConnect } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { SUCCESSOR_MODEL } from '../../src/auth-server/rotation.ts'
import { type TcpRelay, tcpRelay } from '../support/tcp_relay.ts'
import { basic, connect, type Harness, registerPublicClient, startAuthServer, token } from './harness.ts'

const BASE_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA_PREFIX = `gh_refresh_${randomBytes(6).toString('hex')}`
let schemas = 0
const postgresUrl = (base = BASE_URL) => `${base}?schema=${SCHEMA_PREFIX}_${++schemas}`

after(async () => {
  const client = new pg.Client({ connectionString: BASE_URL })
  await client.connect()
  try {
    const { rows } = await client.query('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [
      SCHEMA_PREFIX,
    ])
    for (const { nspname } of rows) await client.query(`DROP SCHEMA ${nspname} CASCADE`)
  } finally {
    await client.end()
  }
})

function refresher(h: Harness, clientId: string) {
  return (refreshToken: string) =>
    token(h, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId })
}

function rawRefresh(h: Harness, clientId: string, refreshToken: string): Promise<Response> {
  return fetch(`${h.issuer}/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
    }),
  })
}

/** Whether the store still holds the refresh token unconsumed and unexpired (introspection by a resource server). */
async function usable(h: Harness, refreshToken: string): Promise<boolean> {
  const response = await fetch(`${h.issuer}/introspect`, {
    method: 'POST',
    headers: basic('resource-server', 'resource-server-secret-0123456'),
    body: new URLSearchParams({ token: refreshToken }),
  })
  return ((await response.json()) as { active: boolean }).active
}

/**
 * A refresh whose answer is lost: the request is written on a raw socket, which is closed at once, or as soon
 * as the first byte of the answer arrives.
 */
async function refreshAndHangUp(
  h: Harness,
  clientId: string,
  refreshToken: string,
  when: 'at once' | 'first byte',
) {
  const url = new URL(`${h.issuer}/token`)
  const body = new URLSearchParams({
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    client_id: clientId,
  })
  const socket = tcpConnect(Number(url.port), url.hostname)
  await once(socket, 'connect')
  const request =
    `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n` +
    `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body.toString())}\r\n\r\n${body}`
  const closed = once(socket, 'close')
  if (when === 'at once') socket.write(request, () => socket.destroy())
  else {
    socket.write(request)
    await once(socket, 'data')
    socket.destroy()
  }
  await closed
}

/** The successor the store recorded for a rotated refresh token (its answer may have been lost). */
async function recordedSuccessor(h: Harness, refreshToken: string): Promise<string | undefined> {
  const link = await h.store.oidcAdapter(SUCCESSOR_MODEL).find(refreshToken)
  return link?.successor as string | undefined
}

function retrySuite(backend: string, storageUrl: () => string | undefined) {
  describe(`refresh retries within the reuse interval (${backend})`, () => {
    let h: Harness
    let clientId: string
    let refresh: ReturnType<typeof refresher>
    before(async () => {
      h = await startAuthServer({ path: '/oauth', storageUrl: storageUrl() })
      clientId = await registerPublicClient(h)
      refresh = refresher(h, clientId)
    })
    after(() => h.close())

    test('connection closed at once: the retry 400 ms later gets a set that works', async () => {
      const { refresh_token: first } = await connect(h, clientId)
      await refreshAndHangUp(h, clientId, first as string, 'at once')
      await sleep(400)
      const retry = await refresh(first as string)
      assert.equal(retry.response.status, 200, JSON.stringify(retry.body))
      assert.ok(retry.body.access_token)
      const next = await refresh(retry.body.refresh_token as string)
      assert.equal(next.response.status, 200, JSON.stringify(next.body))
    })

    test('connection closed on the first byte: the retry gets a new set; the successor it never received is dead, and presenting it revokes the grant', async () => {
      const { refresh_token: first } = await connect(h, clientId)
      await refreshAndHangUp(h, clientId, first as string, 'first byte')
      const lost = await recordedSuccessor(h, first as string)
      assert.ok(lost, 'the refresh was rotated before its answer was lost')
      await sleep(400)
      const retry = await refresh(first as string)
      assert.equal(retry.response.status, 200, JSON.stringify(retry.body))
      const replacement = retry.body.refresh_token as string
      assert.notEqual(replacement, lost)
      assert.equal(await usable(h, lost), false)
      assert.equal(await usable(h, first as string), false)
      const next = await refresh(replacement)
      assert.equal(next.response.status, 200, JSON.stringify(next.body))

      const stale = await refresh(lost)
      assert.equal(stale.body.error, 'invalid_grant')
      assert.equal((await refresh(next.body.refresh_token as string)).body.error, 'invalid_grant')
    })

    test('50 concurrent refreshes with one token: no grant revoked, exactly one issued refresh token usable, and it refreshes', async () => {
      let { refresh_token: current } = await connect(h, clientId)
      for (const round of [1, 2]) {
        const results = await Promise.all(Array.from({ length: 50 }, () => refresh(current as string)))
        const issued = results.flatMap((r) =>
          r.response.status === 200 ? [r.body.refresh_token as string] : [],
        )
        for (const r of results.filter((r) => r.response.status !== 200)) {
          assert.equal(r.response.status, 400)
          assert.equal(r.body.error, 'invalid_grant')
        }
        assert.ok(issued.length >= 1, `round ${round}: someone got tokens`)
        const live = []
        for (const value of issued) if (await usable(h, value)) live.push(value)
        assert.equal(live.length, 1, `round ${round}: ${issued.length} issued, ${live.length} usable`)
        current = live[0]
      }
      const after = await refresh(current as string)
      assert.equal(after.response.status, 200, JSON.stringify(after.body))
    })

    test('20 concurrent retries of a token whose answer was lost: one set usable, the grant kept', async () => {
      const { refresh_token: first } = await connect(h, clientId)
      await refreshAndHangUp(h, clientId, first as string, 'first byte')
      await sleep(50)
      const results = await Promise.all(Array.from({ length: 20 }, () => refresh(first as string)))
      const issued = results.flatMap((r) =>
        r.response.status === 200 ? [r.body.refresh_token as string] : [],
      )
      assert.ok(issued.length >= 1)
      assert.ok(results.every((r) => r.response.status === 200 || r.body.error === 'invalid_grant'))
      const live = []
      for (const value of issued) if (await usable(h, value)) live.push(value)
      assert.equal(live.length, 1)
      assert.equal((await refresh(live[0] as string)).response.status, 200)
    })

    test('a retry after the successor was used revokes the grant', async () => {
      const { refresh_token: first } = await connect(h, clientId)
      const second = await refresh(first as string)
      const third = await refresh(second.body.refresh_token as string)
      assert.equal(third.response.status, 200)
      const replay = await refresh(first as string)
      assert.equal(replay.body.error, 'invalid_grant')
      assert.equal((await refresh(third.body.refresh_token as string)).body.error, 'invalid_grant')
    })
  })
}

retrySuite('SQLite', () => undefined)
retrySuite('PostgreSQL', () => postgresUrl())

describe('reuse outside the interval', () => {
  test('an interval outside 0..300 whole seconds is refused at start, naming the setting', async () => {
    const h = await startAuthServer()
    try {
      for (const value of [-1, 1.5, 301]) {
        await assert.rejects(h.restart({ refreshReuseIntervalSeconds: value }), {
          message: `authorization server: refreshReuseIntervalSeconds ${value} must be a whole number of seconds from 0 (off) to 300`,
        })
      }
    } finally {
      await h.close()
    }
  })

  for (const [name, interval, wait] of [
    ['with the interval off (0), a replay right after the rotation', 0, 0],
    ['once the interval (1 s) has passed, a replay', 1, 2100],
  ] as const) {
    test(`${name} revokes the grant`, async () => {
      const h = await startAuthServer({ overrides: { refreshReuseIntervalSeconds: interval } })
      try {
        const clientId = await registerPublicClient(h)
        const refresh = refresher(h, clientId)
        const { refresh_token: first } = await connect(h, clientId)
        const second = await refresh(first as string)
        assert.equal(second.response.status, 200)
        await sleep(wait)
        const replay = await refresh(first as string)
        assert.equal(replay.body.error, 'invalid_grant')
        assert.equal((await refresh(second.body.refresh_token as string)).body.error, 'invalid_grant')
      } finally {
        await h.close()
      }
    })
  }
})

describe('the token endpoint while PostgreSQL is unreachable', () => {
  let relay: TcpRelay
  let h: Harness
  before(async () => {
    const target = new URL(BASE_URL)
    relay = await tcpRelay({ host: target.hostname, port: Number(target.port || 5432) })
    const viaRelay = new URL(BASE_URL)
    viaRelay.port = String(relay.port)
    h = await startAuthServer({ path: '/oauth', storageUrl: postgresUrl(viaRelay.href) })
  })
  after(async () => {
    await h.close()
    await relay.down()
  })

  test('503 with Retry-After and an OAuth error body, logged once, nothing on stderr; after it, nothing lost', async () => {
    const clientId = await registerPublicClient(h)
    const refresh = refresher(h, clientId)
    const { refresh_token: first } = await connect(h, clientId)
    const logged = h.logger.entries.length
    const stderr: string[] = []
    const write = process.stderr.write
    process.stderr.write = ((chunk: string | Uint8Array) => {
      stderr.push(String(chunk))
      return true
    }) as typeof process.stderr.write
    try {
      await relay.down()
      const answers = [
        ...(await Promise.all(Array.from({ length: 6 }, () => rawRefresh(h, clientId, first as string)))),
        // Revocation reaches the store inside the provider (no rate limit before it).
        await fetch(`${h.issuer}/revoke`, {
          method: 'POST',
          body: new URLSearchParams({ token: first as string, client_id: clientId }),
        }),
      ]
      for (const response of answers) {
        assert.equal(response.status, 503)
        assert.equal(response.headers.get('retry-after'), '5')
        assert.match(response.headers.get('content-type') ?? '', /^application\/json/)
        const body = (await response.json()) as Record<string, string>
        assert.equal(body.error, 'temporarily_unavailable')
      }
    } finally {
      process.stderr.write = write
    }
    assert.deepEqual(stderr, [])
    const during = h.logger.entries.slice(logged)
    assert.equal(during.length, 1, JSON.stringify(during))
    assert.equal(during[0]?.message, 'storage unavailable: answering 503 until it is back')

    await relay.up()
    const recovered = await refresh(first as string)
    assert.equal(recovered.response.status, 200, JSON.stringify(recovered.body))
    assert.equal((await refresh(recovered.body.refresh_token as string)).response.status, 200)
    assert.deepEqual(
      h.logger.entries.slice(logged + 1).map((e) => e.message),
      ['storage available again'],
    )
  })
})
