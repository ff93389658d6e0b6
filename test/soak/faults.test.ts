import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { describe, it, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { tempDir } from '../support/embedded-gateway.ts'
import { connectClient, freePort, startEverythingHttp, transportOf } from '../support/gateway-harness.ts'
import { startOwnPostgres } from '../support/own-postgres.ts'
import {
  createUsers,
  refresh,
  type ServeChild,
  type ServeOptions,
  signIn,
  startServeChild,
  type Tokens,
} from '../support/serve-child.ts'

/** server-everything over Streamable HTTP, one process for the whole test (a stdio child per session is slow). */
async function httpUpstream(t: TestContext): Promise<string> {
  const upstream = await startEverythingHttp()
  t.after(() => upstream.close())
  return upstream.url
}

const users = (count: number) => Array.from({ length: count }, (_, i) => `fault${i}`)

/** Signs in every user (one grant each) through `serve`. */
const signInAll = (serve: ServeChild, names: string[]) =>
  Promise.all(names.map((name, i) => signIn(serve.issuer, serve.resource, name, `10.9.0.${i + 1}`)))

/** The access token opens an MCP session and a tool call answers through it. */
async function assertCallable(serve: ServeChild, accessToken: string): Promise<void> {
  const client = await connectClient(serve.resource, accessToken)
  const { content } = await client.callTool({ name: 'echo', arguments: { message: 'still here' } })
  assert.deepEqual(content, [{ type: 'text', text: 'Echo: still here' }])
  await transportOf(client).terminateSession()
  await client.close()
}

describe('faults: nothing is lost when gatehouse serve or its database goes away', () => {
  it('SIGKILL with refreshes in flight, restart: every client continues its grant by retrying', {
    timeout: 90_000,
  }, async (t) => {
    const options: ServeOptions = {
      dataDir: await tempDir('sigkill'),
      port: await freePort(),
      upstream: await httpUpstream(t),
    }
    t.after(() => rm(options.dataDir, { recursive: true, force: true }))
    const names = users(10)
    await createUsers(options, names)
    let serve = await startServeChild(options)
    t.after(() => serve.stop('SIGKILL'))
    const tokens = await signInAll(serve, names)

    // The gateway dies as soon as the first answer is out: the others are somewhere between the request and
    // their answer (some consumed and rotated in the store, some not yet).
    let killed: Promise<void> | undefined
    const answers = await Promise.all(
      tokens.map((issued) =>
        refresh(serve.issuer, issued.refresh_token).then(
          (answer) => {
            killed ??= serve.stop('SIGKILL')
            return answer
          },
          () => undefined,
        ),
      ),
    )
    await killed
    // How many were still in flight depends on the machine's speed; so that an answer is lost every time,
    // the first three clients never read theirs (as if the connection had dropped after the commit).
    const unread = new Set([0, 1, 2])

    serve = await startServeChild(options)
    const continued: Tokens[] = []
    for (const [i, answer] of answers.entries()) {
      // A client that got its answer uses the new token; one that did not retries the token it sent.
      const current = answer?.status === 200 && !unread.has(i) ? answer.body : tokens[i]
      const retried = await refresh(serve.issuer, (current as Tokens).refresh_token)
      assert.equal(retried.status, 200, `client ${i} lost its grant: ${JSON.stringify(retried.body)}`)
      continued.push(retried.body)
    }
    for (const next of continued) await assertCallable(serve, next.access_token)
    // The grants go on: the token each retry got refreshes again.
    for (const next of continued) assert.equal((await refresh(serve.issuer, next.refresh_token)).status, 200)
  })

  // With the stdio upstream each call starts a server-everything child (about 0.5 s of CPU): a round takes
  // seconds, so the phases below wait for what they need rather than for fixed times.
  for (const kind of ['http', 'stdio'] as const)
    it(`PostgreSQL stopped and started under load (${kind} upstream): requests resume and no grant is lost`, {
      timeout: 180_000,
    }, async (t) => {
      const postgres = await startOwnPostgres()
      if (!postgres) return t.skip('no PostgreSQL server installed under /usr/lib/postgresql')
      t.after(() => postgres.destroy())
      const options: ServeOptions = {
        dataDir: await tempDir('pg-restart'),
        storageUrl: postgres.url,
        upstream: kind === 'http' ? await httpUpstream(t) : undefined,
      }
      t.after(() => rm(options.dataDir, { recursive: true, force: true }))
      const names = users(6)
      await createUsers(options, names)
      const serve = await startServeChild(options)
      t.after(() => serve.stop('SIGKILL'))
      const tokens = await signInAll(serve, names)

      const statuses = new Map<string, number>()
      const count = (key: string) => statuses.set(key, (statuses.get(key) ?? 0) + 1)
      const lostGrants: string[] = []
      /** Rounds (a refresh and a call, both answered) per client, and the slowest one's duration. */
      const rounds = names.map(() => 0)
      let slowestRoundMs = 0
      let running = true

      /** Refresh and call, over and over; a failed step is retried with the same token until it succeeds. */
      const load = async (i: number) => {
        let current = tokens[i] as Tokens
        while (running) {
          const began = Date.now()
          const answer = await refresh(serve.issuer, current.refresh_token).catch(() => undefined)
          count(`refresh ${answer?.status ?? 'network error'}`)
          if (answer?.body.error === 'invalid_grant') {
            lostGrants.push(`${names[i]}: ${JSON.stringify(answer.body)}`)
            return
          }
          if (answer?.status !== 200) {
            await sleep(200)
            continue
          }
          current = answer.body
          const called = await assertCallable(serve, current.access_token).then(
            () => true,
            () => false,
          )
          count(`call ${called ? 'ok' : 'failed'}`)
          if (!called) continue
          rounds[i] = (rounds[i] ?? 0) + 1
          slowestRoundMs = Math.max(slowestRoundMs, Date.now() - began)
        }
      }
      /** Waits until `done` or `limitMs`; false when the limit came first. */
      const until = async (done: () => boolean, limitMs: number) => {
        const deadline = Date.now() + limitMs
        while (!done() && Date.now() < deadline) await sleep(100)
        return done()
      }
      const loads = names.map((_, i) => load(i))
      // Every client is under way before the outage; stopping just after a round ends catches refreshes (store
      // transactions) in flight, which once crashed the gateway.
      assert.ok(await until(() => rounds.every((done) => done >= 1), 60_000), `no round completed: ${rounds}`)
      const roundMs = slowestRoundMs
      await postgres.stop()
      // Down for at least 2 s and until the token endpoint has answered during the outage: with stdio the
      // clients may all be inside their (slow) calls for the first seconds.
      await sleep(2000)
      await until(() => statuses.has('refresh 503'), 30_000)
      await postgres.start()
      const before = [...rounds]
      // Each client gets two more rounds (the pool reconnects on its own) within 30 s or four times the
      // slowest round before the outage, whichever is longer: a slow machine is not a hang.
      const resumeMs = Math.max(30_000, 4 * roundMs)
      const resumed = await until(() => rounds.every((done, i) => done - (before[i] ?? 0) >= 2), resumeMs)
      running = false
      await Promise.all(loads)

      const answers = JSON.stringify(Object.fromEntries(statuses))
      t.diagnostic(`answers: ${answers}; slowest round before the outage ${roundMs} ms`)
      assert.deepEqual(lostGrants, [], 'no grant lost')
      assert.equal(serve.child.exitCode, null, `gatehouse serve exited: ${serve.stderr.join('\n')}`)
      assert.ok(
        resumed,
        `every client did two rounds after the restart within ${resumeMs} ms: ${rounds} (from ${before})`,
      )
      assert.ok(statuses.has('refresh 503'), `the token endpoint answered 503 during the outage: ${answers}`)
      assert.deepEqual(
        [...statuses.keys()].filter((key) => /^refresh 5\d\d$/.test(key) && key !== 'refresh 503'),
        [],
        'the token endpoint answered 503 during the outage, no other server error',
      )
    })
})
