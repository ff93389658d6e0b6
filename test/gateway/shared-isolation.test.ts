/**
 * stdio.shared: what the one child says on its own never reaches a user it was not certainly meant for, and
 * no user's `initialize` changes what the child believes about its clients. Two users against an SDK-built
 * server that speaks at awkward times (test/support/gateway-chatty-child.ts) and against server-everything.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { Gateway } from '../../src/gateway/server.ts'
import { eventually } from '../support/eventually.ts'
import {
  ALL_SCOPES,
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

const CHATTY_CHILD = new URL('../support/gateway-chatty-child.ts', import.meta.url).pathname
const ASKING = { elicitation: {}, sampling: {}, roots: { listChanged: true } }

/** A 2025 client that declares every capability and records everything the server sends it on its own. */
interface Listener {
  client: Client
  received: { method: string; params?: unknown }[]
}

async function listener(resource: string, token: string, name: string): Promise<Listener> {
  const client = new Client({ name, version: '1' }, { capabilities: ASKING })
  const received: Listener['received'] = []
  client.fallbackNotificationHandler = async ({ method, params }) => void received.push({ method, params })
  client.fallbackRequestHandler = async ({ method, params }) => {
    received.push({ method, params })
    if (method === 'elicitation/create') return { action: 'accept', content: { answer: `from ${name}` } }
    if (method === 'sampling/createMessage')
      return { role: 'assistant', model: name, content: { type: 'text', text: `from ${name}` } }
    return { roots: [{ uri: `file:///${name}` }] }
  }
  await client.connect(
    new StreamableHTTPClientTransport(new URL(resource), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  )
  return { client, received }
}

/** Ends the session (DELETE), so it no longer listens, and closes the client; once is enough. */
async function end(...targets: Listener[]): Promise<void> {
  for (const { client } of targets) {
    if (client.transport === undefined) continue
    await transportOf(client).terminateSession()
    await client.close()
  }
}

/** Waits until `listener` got a notification of `method`. */
async function waitFor(target: Listener, method: string): Promise<void> {
  await eventually(`${method} to arrive`, () =>
    target.received.some((m) => m.method === method) ? true : undefined,
  )
}

/** A tool call on the 2026-07-28 revision, which never listens; the tool's JSON answer. */
async function statelessCall(resource: string, token: string, name: string, args: Record<string, unknown>) {
  const response = await postRpc(
    resource,
    {
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: {
        name,
        arguments: args,
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientCapabilities': ASKING,
        },
      },
    },
    {
      authorization: `Bearer ${token}`,
      'mcp-protocol-version': '2026-07-28',
      'mcp-method': 'tools/call',
      'mcp-name': name,
      accept: 'application/json',
    },
  )
  const body = await response.json()
  assert.equal(response.status, 200, JSON.stringify(body))
  return body.result
}

const toolJson = (result: { content: { text: string }[] }) => JSON.parse(result.content[0]?.text as string)

const LIST_CHANGED = { method: 'notifications/tools/list_changed', params: undefined }

/** A raw session that has not opened its GET stream. */
async function rawSession(resource: string, token: string, clientName: string, capabilities = {}) {
  const response = await postRpc(
    resource,
    {
      ...INITIALIZE,
      params: { ...INITIALIZE.params, capabilities, clientInfo: { name: clientName, version: '1' } },
    },
    { authorization: `Bearer ${token}`, accept: 'application/json' },
  )
  assert.equal(response.status, 200)
  return { id: response.headers.get('mcp-session-id') as string, initialized: (await response.json()).result }
}

const deleteSession = (resource: string, token: string, id: string) =>
  fetch(resource, { method: 'DELETE', headers: { authorization: `Bearer ${token}`, 'mcp-session-id': id } })

/** Reads an SSE response until `done` holds for what came, or `ms` pass. */
async function readSse(response: Response, done: (text: string) => boolean, ms: number): Promise<string> {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let text = ''
  const deadline = Date.now() + ms
  while (!done(text) && Date.now() < deadline) {
    const chunk = await Promise.race([reader.read(), sleep(deadline - Date.now()).then(() => undefined)])
    if (chunk === undefined || chunk.done) break
    text += decoder.decode(chunk.value)
  }
  await reader.cancel()
  return text
}

describe('gateway: stdio.shared keeps the server’s own messages from reaching another user (SDK server)', () => {
  let idp: TestIdp
  let gateway: Gateway
  let alice: string
  let bob: string

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(idp, { command: [NODE, CHATTY_CHILD] }, { stdio: { shared: true } })
    ;[alice, bob] = await Promise.all([tokenFor(idp, 'alice', ALL_SCOPES), tokenFor(idp, 'bob', ALL_SCOPES)])
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('the child is initialized by the bridge alone: no user’s initialize, first or repeated, reaches it', async (t) => {
    const a = await listener(gateway.resource, alice, 'alice-app')
    const b = await rawSession(gateway.resource, bob, 'bob-app', ASKING)
    // Sessions left behind would change who listens in the next tests.
    t.after(() => Promise.all([end(a), deleteSession(gateway.resource, bob, b.id)]))
    const again = await postRpc(
      gateway.resource,
      {
        ...INITIALIZE,
        id: 9,
        params: {
          ...INITIALIZE.params,
          capabilities: ASKING,
          clientInfo: { name: 'bob-again', version: '2' },
        },
      },
      { authorization: `Bearer ${bob}`, 'mcp-session-id': b.id, accept: 'application/json' },
    )
    assert.equal(again.status, 200)
    assert.deepEqual(await again.json(), { jsonrpc: '2.0', id: 9, result: b.initialized })
    const stateless = await postRpc(
      gateway.resource,
      {
        ...INITIALIZE,
        params: {
          ...INITIALIZE.params,
          capabilities: ASKING,
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientCapabilities': ASKING,
          },
        },
      },
      {
        authorization: `Bearer ${bob}`,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'initialize',
        accept: 'application/json',
      },
    )
    // The 2026-07-28 revision removed initialize: refused by the bridge, it never reaches the child either.
    assert.equal(stateless.status, 404)
    assert.equal((await stateless.json()).error.code, -32_601)

    const seen = toolJson((await a.client.callTool({ name: 'seen-initialize' })) as never)
    assert.deepEqual(seen, [
      { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'gatehouse', version: '1' } },
    ])
    assert.deepEqual(a.client.getServerCapabilities(), b.initialized.capabilities)
  })

  it('elicitation, sampling, logging and resource updates of one user’s tool reach no one; the tool gets no other user’s answer', async (t) => {
    const b = await listener(gateway.resource, bob, 'bob')
    const a = await listener(gateway.resource, alice, 'alice')
    t.after(() => end(a, b))
    // Alice on the 2026-07-28 revision never listens: Bob's is the only session that does.
    for (const tool of ['elicit', 'sample']) {
      const answer = toolJson(await statelessCall(gateway.resource, alice, tool, { secret: `alice ${tool}` }))
      assert.deepEqual(answer, { error: 'MCP error -32601: the client cannot be reached' })
      const own = toolJson(
        (await a.client.callTool({ name: tool, arguments: { secret: `alice ${tool} 2` } })) as never,
      )
      assert.deepEqual(own, { error: 'MCP error -32601: the client cannot be reached' })
    }
    await statelessCall(gateway.resource, alice, 'log', { secret: 'alice log' })
    await a.client.callTool({ name: 'log', arguments: { secret: 'alice log 2' } })
    // After the request was answered, while Bob's and Alice's requests are in flight.
    await statelessCall(gateway.resource, alice, 'chatter-later', { secret: 'alice later', delayMs: 100 })
    const progress: number[] = []
    await Promise.all([
      a.client.callTool({ name: 'progress', arguments: { secret: '', delayMs: 50 } }, undefined, {
        onprogress: (p) => void progress.push(p.progress),
      }),
      b.client.callTool({ name: 'elicit', arguments: { secret: 'bob asks' } }),
      sleep(300),
    ])
    assert.deepEqual(progress, [1], 'progress for an answered request goes nowhere')

    // The list change comes after everything above on the child's output: whatever was not dropped came first.
    await statelessCall(gateway.resource, alice, 'list-changed', { secret: 'alice list' })
    await Promise.all([waitFor(b, LIST_CHANGED.method), waitFor(a, LIST_CHANGED.method)])
    assert.deepEqual(b.received, [LIST_CHANGED])
    assert.deepEqual(a.received, [LIST_CHANGED])
  })

  it('what the child says after a session ended reaches no later session', async (t) => {
    // Alice's 2026 subject keeps the child alive between the 2025 sessions.
    await statelessCall(gateway.resource, alice, 'log', { secret: 'keep' })
    const a = await listener(gateway.resource, alice, 'alice')
    await a.client.callTool({ name: 'chatter-later', arguments: { secret: 'alice between', delayMs: 400 } })
    await end(a)
    const b = await listener(gateway.resource, bob, 'bob')
    t.after(() => end(b))
    await sleep(700)
    await statelessCall(gateway.resource, alice, 'list-changed', { secret: 'alice list' })
    await waitFor(b, LIST_CHANGED.method)
    assert.deepEqual(b.received, [LIST_CHANGED])
  })

  it('what the child says before a session opens its GET stream is never kept for it', async (t) => {
    const b = await rawSession(gateway.resource, bob, 'bob-raw')
    t.after(() => deleteSession(gateway.resource, bob, b.id))
    await statelessCall(gateway.resource, alice, 'chatter-later', { secret: 'alice early', delayMs: 0 })
    await sleep(300)
    const stream = await fetch(gateway.resource, {
      headers: { authorization: `Bearer ${bob}`, 'mcp-session-id': b.id, accept: 'text/event-stream' },
    })
    assert.equal(stream.status, 200)
    const reading = readSse(stream, (text) => text.includes('list_changed'), 15_000)
    await sleep(100)
    await statelessCall(gateway.resource, alice, 'list-changed', { secret: 'alice list' })
    // The stream's priming event (empty data) carries nothing to keep.
    const events = (await reading)
      .split('\n')
      .filter((line) => line.startsWith('data: ') && line !== 'data: ')
    assert.deepEqual(events, [`data: ${JSON.stringify({ jsonrpc: '2.0', method: LIST_CHANGED.method })}`])
  })
})

describe('gateway: stdio.shared with server-everything, two users', () => {
  let idp: TestIdp
  let gateway: Gateway
  let alice: string
  let bob: string

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(idp, { command: [NODE, EVERYTHING_BIN] }, { stdio: { shared: true } })
    ;[alice, bob] = await Promise.all([tokenFor(idp, 'alice', ALL_SCOPES), tokenFor(idp, 'bob', ALL_SCOPES)])
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('no user switches on elicitation or sampling for all; one user’s log reaches no other', async (t) => {
    const a = await listener(gateway.resource, alice, 'alice')
    const b = await listener(gateway.resource, bob, 'bob')
    t.after(() => end(a, b))
    const conditional = ['trigger-elicitation-request', 'trigger-sampling-request', 'get-roots-list']
    const names = async () => (await a.client.listTools()).tools.map((t) => t.name)
    assert.deepEqual(
      (await names()).filter((name) => conditional.includes(name)),
      [],
    )
    const again = await postRpc(
      gateway.resource,
      { ...INITIALIZE, id: 5, params: { ...INITIALIZE.params, capabilities: ASKING } },
      {
        authorization: `Bearer ${bob}`,
        'mcp-session-id': transportOf(b.client).sessionId as string,
        accept: 'application/json',
      },
    )
    assert.equal((await again.json()).result.serverInfo.name, 'mcp-servers/everything')
    assert.deepEqual(
      (await names()).filter((name) => conditional.includes(name)),
      [],
    )
    const called = await a.client.callTool({ name: 'trigger-elicitation-request' })
    assert.equal(called.isError, true)
    await end(a)

    // Simulated logging sends one line at once, then one every 5 s: none reaches Bob, now the only listener.
    await statelessCall(gateway.resource, alice, 'toggle-simulated-logging', {})
    const progress: number[] = []
    await b.client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
      undefined,
      { onprogress: (p) => void progress.push(p.progress) },
    )
    assert.deepEqual(progress, [1, 2, 3])
    await sleep(500)
    await statelessCall(gateway.resource, alice, 'toggle-simulated-logging', {})
    // server-everything announces tool list changes, which go to everyone and carry nothing.
    const own = ({ method }: { method: string }) => method !== LIST_CHANGED.method
    assert.deepEqual(b.received.filter(own), [])
  })
})
