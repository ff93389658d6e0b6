import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  ALL_SCOPES,
  connectClient,
  INITIALIZE,
  postRpc,
  startEverythingHttp,
  startIdp,
  startTestGateway,
  tokenFor,
  transportOf,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

/** server-everything in Streamable HTTP mode behind the gateway, driven by the MCP SDK v1 client. */
describe('gateway: Streamable HTTP upstream (server-everything)', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startEverythingHttp>>
  let gateway: Gateway
  let fullToken: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startEverythingHttp()])
    gateway = await startTestGateway(
      idp,
      { upstream: upstream.url },
      {
        tools: { 'get-sum': { scopes: ['math'] }, 'get-env': { scopes: ['admin'] } },
        default_tool_scopes: ['mcp'],
      },
    )
    fullToken = await idp.issueToken({ scope: ALL_SCOPES })
  })

  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  it('answers 401 with a challenge that points at the metadata, which names the IdP', async () => {
    const response = await postRpc(gateway.resource, INITIALIZE)
    assert.equal(response.status, 401)
    const challenge = response.headers.get('www-authenticate') ?? ''
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(challenge)?.[1]
    assert.equal(metadataUrl, `${new URL(gateway.resource).origin}/.well-known/oauth-protected-resource/mcp`)
    const metadata = (await (await fetch(metadataUrl as string)).json()) as Record<string, unknown>
    assert.equal(metadata.resource, gateway.resource)
    assert.deepEqual(metadata.authorization_servers, [idp.issuer])
  })

  it('initializes, lists, calls echo, streams progress of a long tool and deletes the session', async () => {
    const client = await connectClient(gateway.resource, fullToken)
    assert.equal(client.getServerVersion()?.name, 'mcp-servers/everything')
    const { tools } = await client.listTools()
    assert.ok(tools.some((t) => t.name === 'echo'))
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'through the gateway' } })
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: through the gateway' }])

    const progress: number[] = []
    const long = await client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 0.6, steps: 3 } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) },
    )
    assert.deepEqual(progress, [1, 2, 3])
    assert.match(JSON.stringify(long.content), /Long running operation completed/)

    const transport = transportOf(client)
    const sessionId = transport.sessionId as string
    await transport.terminateSession()
    const reused = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 9, method: 'tools/list' },
      {
        authorization: `Bearer ${fullToken}`,
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-06-18',
      },
    )
    assert.equal(reused.status, 404)
    await client.close()
  })

  it('shows only the tools the token may call, and refuses the others with a step-up challenge', async () => {
    const token = await idp.issueToken({ scope: 'mcp' })
    const client = await connectClient(gateway.resource, token)
    const names = (await client.listTools()).tools.map((t) => t.name)
    assert.ok(names.includes('echo'))
    assert.ok(!names.includes('get-sum'))
    assert.ok(!names.includes('get-env'))

    const sessionId = transportOf(client).sessionId as string
    const response = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 1, b: 2 } } },
      { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
    )
    assert.equal(response.status, 403)
    assert.equal(
      response.headers.get('www-authenticate'),
      `Bearer error="insufficient_scope", error_description="the access token lacks the scopes this operation requires", scope="mcp math", resource_metadata="${gateway.guard.resourceMetadataUrl}"`,
    )
    assert.deepEqual(await response.json(), {
      error: 'insufficient_scope',
      error_description: 'the access token lacks the scopes this operation requires',
    })
    await client.close()
  })

  it('refuses a session to a subject other than its creator, as if it did not exist', async () => {
    const alice = await tokenFor(idp, 'alice', ALL_SCOPES)
    const bob = await tokenFor(idp, 'bob', ALL_SCOPES)
    const client = await connectClient(gateway.resource, alice)
    const sessionId = transportOf(client).sessionId as string
    const hijack = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { authorization: `Bearer ${bob}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
    )
    assert.equal(hijack.status, 404)
    assert.deepEqual(await hijack.json(), {
      jsonrpc: '2.0',
      id: 2,
      error: { code: -32000, message: 'Session not found' },
    })
    // The owner is unaffected.
    assert.ok((await client.listTools()).tools.length > 0)
    await client.close()
  })
})
