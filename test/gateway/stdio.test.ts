import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  ALL_SCOPES,
  connectClient,
  EVERYTHING_BIN,
  INITIALIZE,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
  transportOf,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname

describe('gateway: stdio bridge', () => {
  let idp: TestIdp
  let everything: Gateway
  let fragile: Gateway
  let token: string

  before(async () => {
    idp = await startIdp()
    ;[everything, fragile] = await Promise.all([
      startTestGateway(
        idp,
        { command: [NODE, EVERYTHING_BIN] },
        { tools: { 'get-sum': { scopes: ['admin'] } } },
      ),
      startTestGateway(idp, { command: [NODE, FRAGILE_CHILD] }, { limits: { upstream_timeout_ms: 2000 } }),
    ])
    token = await tokenFor(idp, 'carol', 'mcp math')
  })

  after(async () => {
    await Promise.all([everything?.close(), fragile?.close()])
    await idp?.close()
  })

  it('runs server-everything per session: initialize, tools, progress over SSE, DELETE', async () => {
    const client = await connectClient(everything.resource, token)
    assert.equal(client.getServerVersion()?.name, 'mcp-servers/everything')
    const names = (await client.listTools()).tools.map((t) => t.name)
    assert.ok(names.includes('echo'))
    assert.ok(!names.includes('get-sum'), 'get-sum needs admin, which the token lacks')
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'over stdio' } })
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: over stdio' }])

    const progress: number[] = []
    await client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 0.6, steps: 3 } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) },
    )
    assert.deepEqual(progress, [1, 2, 3])

    const transport = transportOf(client)
    const sessionId = transport.sessionId as string
    assert.match(sessionId, /^[0-9a-f-]{36}$/)
    await transport.terminateSession()
    const reused = await postRpc(
      everything.resource,
      { jsonrpc: '2.0', id: 3, method: 'tools/list' },
      { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId },
    )
    assert.equal(reused.status, 404)
    await client.close()
  })

  it('keeps sessions apart: a second subject cannot use the first one’s session', async () => {
    const alice = await connectClient(everything.resource, await tokenFor(idp, 'alice', ALL_SCOPES))
    const bob = await tokenFor(idp, 'bob', ALL_SCOPES)
    const response = await postRpc(
      everything.resource,
      { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x' } } },
      { authorization: `Bearer ${bob}`, 'mcp-session-id': transportOf(alice).sessionId as string },
    )
    assert.equal(response.status, 404)
    assert.deepEqual(await response.json(), {
      jsonrpc: '2.0',
      id: 4,
      error: { code: -32000, message: 'Session not found' },
    })
    await alice.close()
  })

  const failures = [
    { tool: 'crash', code: -32000, message: 'the MCP server process exited with code 3' },
    { tool: 'hang', code: -32001, message: 'the MCP server did not answer within 2000 ms' },
  ]
  for (const { tool, code, message } of failures) {
    it(`answers a JSON-RPC error when the child ${tool === 'crash' ? 'crashes' : 'hangs'}, and stays up`, async () => {
      const client = await connectClient(fragile.resource, token)
      await assert.rejects(
        client.callTool({ name: tool, arguments: {} }),
        (error: { code?: number; message?: string }) => {
          assert.equal(error.code, code)
          assert.equal(error.message, `MCP error ${code}: ${message}`)
          return true
        },
      )
      await client.close()
      // A new session gets a healthy child.
      const next = await connectClient(fragile.resource, token)
      assert.deepEqual((await next.callTool({ name: 'garbage', arguments: {} })).content, [
        { type: 'text', text: 'called garbage' },
      ])
      await next.close()
    })
  }

  it('refuses a non-initialize request without a session', async () => {
    const response = await postRpc(
      fragile.resource,
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      { authorization: `Bearer ${token}` },
    )
    assert.equal(response.status, 400)
    assert.equal(((await response.json()) as { error: { code: number } }).error.code, -32000)
    assert.equal(
      (await postRpc(fragile.resource, INITIALIZE, { authorization: `Bearer ${token}` })).status,
      200,
    )
  })
})
