/**
 * `subscriptions/listen` through the stdio bridge (2026-07-28): the acknowledgement first, then only the
 * notifications the client opted in to, each tagged with the request's id; the child subscribed to resources
 * once per URI and unsubscribed when the last stream naming it ends; never another user's notifications; a
 * bounded number of streams per user.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { JsonRpcMessage } from '../../src/gateway/jsonrpc.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import { LISTEN_LIMITS } from '../../src/gateway/stdio/listen.ts'
import {
  type LogCapture,
  logCapture,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const CHILD = new URL('../support/listen-child.ts', import.meta.url).pathname
const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId'
const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': {},
}

const headersFor = async (idp: TestIdp, user: string) => ({
  authorization: `Bearer ${await tokenFor(idp, user, 'mcp')}`,
  'mcp-protocol-version': '2026-07-28',
})

interface Listen {
  response: Response
  next(): Promise<JsonRpcMessage>
  close(): void
}

/** Opens a listen stream; `next` gives its JSON-RPC messages one by one (the priming event skipped). */
async function listen(
  resource: string,
  headers: Record<string, string>,
  id: number | string,
  notifications: unknown,
): Promise<Listen> {
  const abort = new AbortController()
  const response = await fetch(resource, {
    method: 'POST',
    signal: abort.signal,
    headers: {
      ...headers,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-method': 'subscriptions/listen',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id,
      method: 'subscriptions/listen',
      params: { notifications, _meta: META },
    }),
  })
  let reader: ReadableStreamDefaultReader<string> | undefined
  const messages: JsonRpcMessage[] = []
  let buffer = ''
  return {
    response,
    async next() {
      reader ??= response.body?.pipeThrough(new TextDecoderStream()).getReader()
      while (messages.length === 0) {
        const chunk = await reader?.read()
        if (chunk === undefined || chunk.done) throw new Error('the stream ended')
        buffer += chunk.value
        const events = buffer.split('\n\n')
        buffer = events.pop() ?? ''
        for (const event of events) {
          const data = event
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trim())
            .join('')
          if (data !== '') messages.push(JSON.parse(data) as JsonRpcMessage)
        }
      }
      return messages.shift() as JsonRpcMessage
    },
    close: () => abort.abort(),
  }
}

const call = async (resource: string, headers: Record<string, string>, name: string, uri?: string) => {
  const response = await postRpc(
    resource,
    {
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name, arguments: { uri }, _meta: META },
    },
    { ...headers, accept: 'application/json', 'mcp-method': 'tools/call', 'mcp-name': name },
  )
  assert.equal(response.status, 200)
  await response.arrayBuffer()
}

/** Waits until the log holds `count` lines the child wrote as `text` (no deadline: the test's own applies). */
async function childSaid(log: LogCapture, text: string, count = 1): Promise<number> {
  const seen = () => log.lines.filter((line) => line.includes(`"stderr":"${text}"`)).length
  while (seen() < count) await new Promise((resolve) => setTimeout(resolve, 10))
  return seen()
}
const childSays = (log: LogCapture, text: string) =>
  log.lines.filter((line) => line.includes(`"stderr":"${text}"`)).length

describe('gateway: subscriptions/listen through the stdio bridge, a child per user', () => {
  let idp: TestIdp
  let gateway: Gateway
  let log: LogCapture
  let alice: Record<string, string>
  let bob: Record<string, string>

  before(async () => {
    idp = await startIdp()
    log = logCapture()
    gateway = await startTestGateway(idp, { command: [NODE, CHILD] }, {}, log)
    alice = await headersFor(idp, 'alice')
    bob = await headersFor(idp, 'bob')
  })
  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('server/discover offers the child’s list changes and resource subscriptions', async () => {
    const response = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 1, method: 'server/discover', params: { _meta: META } },
      { ...alice, 'mcp-method': 'server/discover' },
    )
    const body = (await response.json()) as { result: { capabilities: Record<string, unknown> } }
    assert.deepEqual(body.result.capabilities, {
      tools: { listChanged: true },
      prompts: { listChanged: true },
      resources: { listChanged: true, subscribe: true },
    })
  })

  it('acknowledges first, then delivers only what was asked for, tagged with the request id', async () => {
    const stream = await listen(gateway.resource, alice, 'a-1', {
      toolsListChanged: true,
      resourceSubscriptions: ['x:a', 'refuse:me'],
    })
    assert.equal(stream.response.status, 200)
    assert.match(stream.response.headers.get('content-type') ?? '', /^text\/event-stream/)
    assert.deepEqual(await stream.next(), {
      jsonrpc: '2.0',
      method: 'notifications/subscriptions/acknowledged',
      // The URI the child refused is not in what was agreed.
      params: {
        notifications: { toolsListChanged: true, resourceSubscriptions: ['x:a'] },
        _meta: { [SUBSCRIPTION_ID]: 'a-1' },
      },
    })
    assert.equal(childSays(log, 'subscribe x:a'), 1)
    await call(gateway.resource, alice, 'touch', 'x:other')
    await call(gateway.resource, alice, 'touch', 'x:a')
    await call(gateway.resource, alice, 'change')
    assert.deepEqual(await stream.next(), {
      jsonrpc: '2.0',
      method: 'notifications/resources/updated',
      params: { uri: 'x:a', _meta: { [SUBSCRIPTION_ID]: 'a-1' } },
    })
    assert.deepEqual(await stream.next(), {
      jsonrpc: '2.0',
      method: 'notifications/tools/list_changed',
      params: { _meta: { [SUBSCRIPTION_ID]: 'a-1' } },
    })
    stream.close()
    await childSaid(log, 'unsubscribe x:a')
    assert.equal(childSays(log, 'unsubscribe refuse:me'), 0)
  })

  it('a stream that asked for prompts gets no tool list change', async () => {
    const stream = await listen(gateway.resource, alice, 2, {
      promptsListChanged: true,
      resourceSubscriptions: ['x:p'],
    })
    assert.deepEqual((await stream.next()).params?.notifications, {
      promptsListChanged: true,
      resourceSubscriptions: ['x:p'],
    })
    await call(gateway.resource, alice, 'change')
    await call(gateway.resource, alice, 'touch', 'x:p')
    assert.equal((await stream.next()).method, 'notifications/resources/updated')
    stream.close()
  })

  it('never carries another user’s notifications', async () => {
    const mine = await listen(gateway.resource, alice, 3, {
      toolsListChanged: true,
      resourceSubscriptions: ['x:s'],
    })
    const theirs = await listen(gateway.resource, bob, 3, {
      toolsListChanged: true,
      resourceSubscriptions: ['x:s'],
    })
    await mine.next()
    await theirs.next()
    // Each user has a child: both were subscribed, each by the bridge for its own user.
    await childSaid(log, 'subscribe x:s', 2)
    await call(gateway.resource, bob, 'touch', 'x:s')
    await call(gateway.resource, bob, 'change')
    await call(gateway.resource, alice, 'touch', 'x:mine')
    await call(gateway.resource, alice, 'change')
    // Bob's answers came after his notifications: had they reached Alice's stream, they would come first.
    assert.deepEqual((await mine.next()).method, 'notifications/tools/list_changed')
    assert.deepEqual((await theirs.next()).params?.uri, 'x:s')
    assert.deepEqual((await theirs.next()).method, 'notifications/tools/list_changed')
    mine.close()
    theirs.close()
  })

  it('subscribes the child once per URI and unsubscribes when the last stream naming it ends', async () => {
    const first = await listen(gateway.resource, alice, 4, { resourceSubscriptions: ['x:c'] })
    const second = await listen(gateway.resource, alice, 5, { resourceSubscriptions: ['x:c'] })
    await first.next()
    await second.next()
    assert.equal(childSays(log, 'subscribe x:c'), 1)
    first.close()
    await call(gateway.resource, alice, 'touch', 'x:c')
    assert.equal((await second.next()).params?.uri, 'x:c')
    second.close()
    await childSaid(log, 'unsubscribe x:c')
    // A later stream on another URI: by its acknowledgement both closes were long handled.
    const third = await listen(gateway.resource, alice, 6, { resourceSubscriptions: ['x:d'] })
    await third.next()
    third.close()
    await childSaid(log, 'unsubscribe x:d')
    assert.equal(childSays(log, 'unsubscribe x:c'), 1)
  })

  it(`holds at most ${LISTEN_LIMITS.streamsPerSubject} streams per user; the next is 429 and reaches nothing`, async () => {
    const open: Listen[] = []
    for (let i = 0; i < LISTEN_LIMITS.streamsPerSubject; i += 1) {
      const stream = await listen(gateway.resource, alice, `limit-${i}`, { toolsListChanged: true })
      await stream.next()
      open.push(stream)
    }
    const refused = await listen(gateway.resource, alice, 'over', { resourceSubscriptions: ['x:over'] })
    assert.equal(refused.response.status, 429)
    const body = (await refused.response.json()) as JsonRpcMessage
    assert.equal(body.id, 'over')
    assert.equal(body.error?.code, -32000)
    // Another user's streams are counted apart.
    const other = await listen(gateway.resource, bob, 'other', { toolsListChanged: true })
    assert.equal(other.response.status, 200)
    await other.next()
    other.close()
    for (const stream of open) stream.close()
    // Once they are closed, a stream opens again.
    let again: Listen
    do {
      again = await listen(gateway.resource, alice, 'again', { resourceSubscriptions: ['x:again'] })
      if (again.response.status === 429) await again.response.arrayBuffer()
    } while (again.response.status === 429)
    assert.equal((await again.next()).method, 'notifications/subscriptions/acknowledged')
    again.close()
    assert.equal(childSays(log, 'subscribe x:over'), 0)
  })

  it('refuses a filter that is not one, and a listen in a batch, before the child', async () => {
    const bad = await listen(gateway.resource, alice, 7, { toolsListChanged: 'yes' })
    assert.equal(bad.response.status, 400)
    const body = (await bad.response.json()) as JsonRpcMessage
    assert.equal(body.error?.code, -32602)
    assert.match(body.error?.message ?? '', /toolsListChanged must be a boolean/)
    const many = await listen(gateway.resource, alice, 8, {
      resourceSubscriptions: Array.from({ length: 65 }, (_, i) => `x:${i}`),
    })
    assert.equal(many.response.status, 400)
    await many.response.arrayBuffer()
    const listenMessage = {
      jsonrpc: '2.0',
      id: 9,
      method: 'subscriptions/listen',
      params: { notifications: { resourceSubscriptions: ['x:batch'] }, _meta: META },
    }
    const batch = await postRpc(gateway.resource, [listenMessage, { ...listenMessage, id: 10 }], {
      ...alice,
      'mcp-method': 'subscriptions/listen',
    })
    assert.equal(batch.status, 400)
    await batch.arrayBuffer()
    assert.equal(childSays(log, 'subscribe x:0'), 0)
    assert.equal(childSays(log, 'subscribe x:batch'), 0)
  })
})

describe('gateway: subscriptions/listen with stdio.shared', () => {
  let idp: TestIdp
  let gateway: Gateway
  let log: LogCapture
  let alice: Record<string, string>
  let bob: Record<string, string>

  before(async () => {
    idp = await startIdp()
    log = logCapture()
    gateway = await startTestGateway(idp, { command: [NODE, CHILD] }, { stdio: { shared: true } }, log)
    alice = await headersFor(idp, 'alice')
    bob = await headersFor(idp, 'bob')
  })
  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('offers no resource subscriptions: nothing says whose a shared child’s update is', async () => {
    const response = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 1, method: 'server/discover', params: { _meta: META } },
      { ...alice, 'mcp-method': 'server/discover' },
    )
    const body = (await response.json()) as { result: { capabilities: Record<string, unknown> } }
    assert.deepEqual(body.result.capabilities.resources, { listChanged: true })
    const stream = await listen(gateway.resource, alice, 1, {
      toolsListChanged: true,
      resourceSubscriptions: ['x:a'],
    })
    assert.deepEqual((await stream.next()).params?.notifications, { toolsListChanged: true })
    await call(gateway.resource, bob, 'touch', 'x:a')
    await call(gateway.resource, alice, 'change')
    assert.equal((await stream.next()).method, 'notifications/tools/list_changed')
    assert.equal(childSays(log, 'subscribe x:a'), 0)
    stream.close()
  })

  it('a list change is news for every user’s stream, as on the GET stream', async () => {
    const mine = await listen(gateway.resource, alice, 2, { toolsListChanged: true })
    await mine.next()
    await call(gateway.resource, bob, 'change')
    assert.deepEqual(await mine.next(), {
      jsonrpc: '2.0',
      method: 'notifications/tools/list_changed',
      params: { _meta: { [SUBSCRIPTION_ID]: 2 } },
    })
    mine.close()
  })

  it('the gateway closing ends a stream with the request’s result', async () => {
    const stream = await listen(gateway.resource, alice, 'last', { toolsListChanged: true })
    await stream.next()
    const closed = gateway.close()
    assert.deepEqual(await stream.next(), {
      jsonrpc: '2.0',
      id: 'last',
      result: { resultType: 'complete', _meta: { [SUBSCRIPTION_ID]: 'last' } },
    })
    await closed
  })
})

describe('gateway: an idle subscriptions/listen stream', () => {
  let idp: TestIdp
  let gateway: Gateway
  let log: LogCapture

  before(async () => {
    idp = await startIdp()
    log = logCapture()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, CHILD] },
      { limits: { stream_idle_timeout_ms: 200 } },
      log,
    )
  })
  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('is ended with the request’s result, and its resource subscriptions released', async () => {
    const stream = await listen(gateway.resource, await headersFor(idp, 'alice'), 1, {
      resourceSubscriptions: ['x:idle'],
    })
    await stream.next()
    assert.deepEqual(await stream.next(), {
      jsonrpc: '2.0',
      id: 1,
      result: { resultType: 'complete', _meta: { [SUBSCRIPTION_ID]: 1 } },
    })
    await assert.rejects(stream.next(), /the stream ended/)
    await childSaid(log, 'unsubscribe x:idle')
  })
})
