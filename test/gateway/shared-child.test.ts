import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  ALL_SCOPES,
  connectClient,
  EVERYTHING_BIN,
  type LogCapture,
  logCapture,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
  transportOf,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const STATELESS_META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': {},
}

const startedPids = (log: LogCapture): number[] =>
  log.lines
    .map((line) => JSON.parse(line) as { msg: string; pid: number; shared?: boolean })
    .filter((entry) => entry.msg === 'MCP server process started' && entry.shared === true)
    .map((entry) => entry.pid)

const sessionOf = (client: Client): string => transportOf(client).sessionId as string

/** A raw `tools/call` of echo with id 1 in a session, answered as JSON. */
async function echoWithIdOne(resource: string, token: string, sessionId: string, message: string) {
  const response = await postRpc(
    resource,
    { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { message } } },
    {
      authorization: `Bearer ${token}`,
      'mcp-session-id': sessionId,
      'mcp-protocol-version': '2025-06-18',
      accept: 'application/json',
    },
  )
  return { status: response.status, body: await response.json() }
}

describe('gateway: stdio.shared, one child for every session', () => {
  let idp: TestIdp
  let gateway: Gateway
  let log: LogCapture
  let alice: string
  let bob: string

  before(async () => {
    idp = await startIdp()
    log = logCapture()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, EVERYTHING_BIN] },
      { stdio: { shared: true }, limits: { upstream_timeout_ms: 20_000 } },
      log,
    )
    ;[alice, bob] = await Promise.all([tokenFor(idp, 'alice', ALL_SCOPES), tokenFor(idp, 'bob', ALL_SCOPES)])
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('warns at start that the server sees every user’s requests', () => {
    const warnings = log.lines.map((line) => JSON.parse(line)).filter((e) => e.level === 40)
    assert.ok(warnings.some((e) => /stdio\.shared is on: .*cannot tell users apart/.test(e.msg)))
  })

  it('two subjects’ sessions share one child; same ids and progress tokens stay apart', async () => {
    const clients = await Promise.all([
      connectClient(gateway.resource, alice),
      connectClient(gateway.resource, bob),
    ])
    const [a, b] = clients as [Client, Client]
    assert.notEqual(sessionOf(a), sessionOf(b))
    assert.deepEqual(
      [a, b].map((c) => c.getServerVersion()?.name),
      ['mcp-servers/everything', 'mcp-servers/everything'],
    )
    const lists = await Promise.all([a.listTools(), b.listTools()])
    assert.ok(lists.every((list) => list.tools.some((t) => t.name === 'echo')))

    const echoes = await Promise.all([
      echoWithIdOne(gateway.resource, alice, sessionOf(a), 'from alice'),
      echoWithIdOne(gateway.resource, bob, sessionOf(b), 'from bob'),
    ])
    assert.deepEqual(echoes, [
      {
        status: 200,
        body: { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'Echo: from alice' }] } },
      },
      {
        status: 200,
        body: { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'Echo: from bob' }] } },
      },
    ])

    // Both SDK clients use the same request id as progress token: only the bridge's renumbering keeps them apart.
    const progress: number[][] = [[], []]
    await Promise.all(
      [3, 5].map((steps, i) =>
        clients[i]?.callTool(
          { name: 'trigger-long-running-operation', arguments: { duration: 0.5, steps } },
          undefined,
          { onprogress: (p) => progress[i]?.push(p.progress) },
        ),
      ),
    )
    assert.deepEqual(progress, [
      [1, 2, 3],
      [1, 2, 3, 4, 5],
    ])
    assert.equal(startedPids(log).length, 1)

    // Bob's session cannot be used with Alice's token, shared child or not.
    const crossed = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 7, method: 'tools/list' },
      {
        authorization: `Bearer ${alice}`,
        'mcp-session-id': sessionOf(b),
        'mcp-protocol-version': '2025-06-18',
      },
    )
    assert.equal(crossed.status, 404)

    // DELETE ends Alice's session only: the child goes on for Bob.
    const aliceSession = sessionOf(a)
    await transportOf(a).terminateSession()
    const gone = await echoWithIdOne(gateway.resource, alice, aliceSession, 'after delete')
    assert.deepEqual(gone, {
      status: 404,
      body: { jsonrpc: '2.0', id: 1, error: { code: -32000, message: 'Session not found' } },
    })
    const still = await b.callTool({ name: 'echo', arguments: { message: 'still here' } })
    assert.deepEqual(still.content, [{ type: 'text', text: 'Echo: still here' }])
    assert.equal(startedPids(log).length, 1)
    await Promise.all([a.close(), b.close()])
  })

  it('2026-07-28 requests of both subjects go to the same child', async () => {
    const session = await connectClient(gateway.resource, alice)
    const before = log.lines.length
    const answers = await Promise.all(
      [alice, bob].map(async (token, i) => {
        const response = await postRpc(
          gateway.resource,
          {
            jsonrpc: '2.0',
            id: 1,
            method: 'tools/call',
            params: { name: 'echo', arguments: { message: `stateless ${i}` }, _meta: STATELESS_META },
          },
          {
            authorization: `Bearer ${token}`,
            'mcp-protocol-version': '2026-07-28',
            'mcp-method': 'tools/call',
            'mcp-name': 'echo',
            accept: 'application/json',
          },
        )
        return response.json()
      }),
    )
    assert.deepEqual(
      answers.map((a) => [a.id, a.result.content[0].text]),
      [
        [1, 'Echo: stateless 0'],
        [1, 'Echo: stateless 1'],
      ],
    )
    const started = log.lines
      .slice(before)
      .filter((line) => JSON.parse(line).msg === 'MCP server process started')
    assert.deepEqual(started, [])
    await session.close()
  })

  it('a crash fails both sessions’ pending requests; the next session gets a fresh child', async () => {
    const clients = await Promise.all([
      connectClient(gateway.resource, alice),
      connectClient(gateway.resource, bob),
    ])
    const pids = startedPids(log)
    const pid = pids.at(-1) as number
    process.kill(pid, 0)
    let reported = 0
    let bothWorking: () => void = () => {}
    const working = new Promise<void>((resolve) => {
      bothWorking = resolve
    })
    const calls = clients.map((client) => {
      let first = true
      return client.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration: 30, steps: 30 } },
        undefined,
        {
          onprogress: () => {
            if (first && ++reported === 2) bothWorking()
            first = false
          },
        },
      )
    })
    await working
    process.kill(pid, 'SIGKILL')
    const outcomes = await Promise.allSettled(calls)
    assert.deepEqual(
      outcomes.map((o) => o.status === 'rejected' && [o.reason.code, o.reason.message]),
      Array(2).fill([-32000, 'MCP error -32000: the MCP server process exited with SIGKILL']),
    )
    // The crashed child's sessions are gone with it.
    const stale = await echoWithIdOne(gateway.resource, alice, sessionOf(clients[0] as Client), 'stale')
    assert.equal(stale.status, 404)
    await Promise.all(clients.map((c) => c.close()))

    const next = await connectClient(gateway.resource, bob)
    const echo = await next.callTool({ name: 'echo', arguments: { message: 'fresh' } })
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: fresh' }])
    const restarted = startedPids(log)
    assert.equal(restarted.length, pids.length + 1)
    assert.notEqual(restarted.at(-1), pid)
    await next.close()
  })
})
