/**
 * The MCP conformance suite's `server` scenarios (the default suite and the 2026-07-28 draft ones) run on an
 * SDK-built server directly, through the gateway with that server as an HTTP upstream, and through the
 * gateway running the same server over stdio. Any check that passes directly but not through the gateway
 * fails the test: the gateway must be transparent. A forwarding proxy adds the bearer token the suite
 * cannot send.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { ALL_SCOPES, NODE, startIdp, startTestGateway, tokenFor } from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'
import { type CheckResults, countChecks, lostChecks, runServerSuite } from './suite.ts'
import { startTokenProxy } from './token-proxy.ts'

const FIXTURE = new URL('../support/conformance-server.ts', import.meta.url).pathname
const SUITES = ['active', 'draft'] as const
/** Each scenario opens its own session, and some more than one: about 60 for the two suites. */
const ROOMY_SESSIONS = {
  sessions: {
    max_sessions: 200,
    max_sessions_per_user: 200,
    new_sessions_per_user_per_minute: 200,
    new_sessions_per_minute: 200,
  },
}
type Target = 'direct' | 'http' | 'stdio'

async function startFixture(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(NODE, [FIXTURE, 'http'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk
      const match = /^listening (\S+)$/m.exec(out)
      if (match) resolve(match[1] as string)
    })
    child.once('exit', (code) => reject(new Error(`the fixture server exited with ${code}`)))
  })
  return { url, child }
}

describe('MCP conformance suite, server scenarios, through the gateway', () => {
  let idp: TestIdp
  let fixture: Awaited<ReturnType<typeof startFixture>>
  const gateways: Gateway[] = []
  const proxies: { close(): Promise<void> }[] = []
  const results = new Map<string, CheckResults>()
  let root = ''
  const reruns: string[] = []

  before(async () => {
    ;[idp, fixture] = await Promise.all([startIdp(), startFixture()])
    const token = await tokenFor(idp, 'conformance', ALL_SCOPES)
    const http = await startTestGateway(idp, { upstream: fixture.url }, ROOMY_SESSIONS)
    const stdio = await startTestGateway(idp, { command: [NODE, FIXTURE, 'stdio'] }, ROOMY_SESSIONS)
    gateways.push(http, stdio)
    const urls: Record<Target, string> = { direct: fixture.url, http: '', stdio: '' }
    for (const [target, gateway] of [
      ['http', http],
      ['stdio', stdio],
    ] as const) {
      const proxy = await startTokenProxy(gateway.resource, token)
      proxies.push(proxy)
      urls[target] = proxy.url
    }
    root = await mkdtemp(join(tmpdir(), 'gatehouse-conformance-'))
    // Every run at once: the suite mostly waits on its own timers and on the stdio children starting.
    await Promise.all(
      Object.entries(urls).flatMap(([target, url]) =>
        SUITES.map(async (suite) => {
          const dir = join(root, `${target}-${suite}`)
          results.set(`${target} ${suite}`, await runServerSuite(url, { suite }, dir))
        }),
      ),
    )
    // Some checks give the server 5 s, which a child starting on a loaded machine can miss: a scenario
    // that lost checks through the gateway runs once more, alone, and counts as it does then.
    for (const target of ['http', 'stdio'] as const)
      for (const suite of SUITES) {
        const through = results.get(`${target} ${suite}`) as CheckResults
        const lost = lostChecks(results.get(`direct ${suite}`) as CheckResults, through)
        for (const scenario of new Set(lost.map((line) => line.split(':')[0] as string))) {
          reruns.push(`${target}: ${scenario}`)
          const dir = join(root, `${target}-${scenario}-again`)
          const again = await runServerSuite(urls[target], { scenario }, dir)
          through.set(scenario, again.get(scenario) ?? new Map())
        }
      }
  })

  after(async () => {
    await Promise.all(proxies.map((proxy) => proxy.close()))
    await Promise.all(gateways.map((gateway) => gateway.close()))
    fixture?.child.kill()
    if (fixture) await once(fixture.child, 'exit')
    await idp?.close()
    if (root) await rm(root, { recursive: true, force: true })
  })

  for (const suite of SUITES) {
    for (const target of ['http', 'stdio'] as const) {
      it(`${suite} suite: every check that passes directly passes through the gateway (${target} upstream)`, (t) => {
        const direct = results.get(`direct ${suite}`) as CheckResults
        const through = results.get(`${target} ${suite}`) as CheckResults
        t.diagnostic(`scenarios run again: ${reruns.join(', ') || 'none'}`)
        t.diagnostic(
          `direct ${JSON.stringify(countChecks(direct))}, ${target} ${JSON.stringify(countChecks(through))}`,
        )
        assert.ok(countChecks(direct).passed > 0, 'the suite ran')
        assert.deepEqual(lostChecks(direct, through), [])
      })
    }
  }
})
