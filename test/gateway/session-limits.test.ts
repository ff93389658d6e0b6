import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  INITIALIZE,
  logCapture,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

describe('gateway: per-user session limit', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let gateway: Gateway

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
    gateway = await startTestGateway(
      idp,
      { upstream: upstream.url('record') },
      { sessions: { max_sessions: 10, max_sessions_per_user: 2 } },
    )
  })

  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  const initialize = (token: string) =>
    postRpc(gateway.resource, INITIALIZE, { authorization: `Bearer ${token}` })

  it('refuses a user’s session above the limit with 503, and not another user’s; a deleted one frees a place', async () => {
    const alice = await tokenFor(idp, 'alice', 'mcp')
    const sessions: string[] = []
    for (let i = 0; i < 2; i += 1) {
      const response = await initialize(alice)
      assert.equal(response.status, 200)
      sessions.push(response.headers.get('mcp-session-id') as string)
    }
    const refused = await initialize(alice)
    assert.equal(refused.status, 503)
    assert.equal(refused.headers.get('retry-after'), '30')
    assert.deepEqual(await refused.json(), {
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32000, message: 'too many MCP sessions; try again later' },
    })

    assert.equal((await initialize(await tokenFor(idp, 'bob', 'mcp'))).status, 200)

    const deleted = await fetch(gateway.resource, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${alice}`, 'mcp-session-id': sessions[0] as string },
    })
    assert.equal(deleted.status, 200)
    assert.equal((await initialize(alice)).status, 200)
  })
})

describe('gateway: anonymous discovery sessions have their own limit', () => {
  const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname
  let idp: TestIdp
  let gateway: Gateway
  const log = logCapture()

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, FRAGILE_CHILD] },
      {
        allow_anonymous_mcp_discovery: true,
        sessions: { max_sessions: 8, max_anonymous_sessions: 3 },
      },
      log,
    )
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('answers a flood of anonymous initializes with 503 beyond the limit, spawns no more children, and still serves a signed-in user', async () => {
    const flood = await Promise.all(Array.from({ length: 12 }, () => postRpc(gateway.resource, INITIALIZE)))
    const statuses = flood.map((r) => r.status)
    await Promise.all(flood.map((r) => r.arrayBuffer()))
    assert.equal(statuses.filter((s) => s === 200).length, 3, String(statuses))
    assert.equal(statuses.filter((s) => s === 503).length, 9, String(statuses))
    const spawned = () => log.lines.filter((line) => line.includes('MCP server process started')).length
    assert.equal(spawned(), 3)

    const signedIn = await postRpc(gateway.resource, INITIALIZE, {
      authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp')}`,
    })
    assert.equal(signedIn.status, 200)
    assert.equal(spawned(), 4)
  })
})
