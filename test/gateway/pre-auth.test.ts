import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Gateway } from '../../src/gateway/server.ts'
import { eventually } from '../support/eventually.ts'
import {
  INITIALIZE,
  type LogCapture,
  logCapture,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname
const MiB = 1_048_576

interface RawExchange {
  /** What the gateway sent back, as text. */
  answer: string
  /** Milliseconds from the first byte sent until the gateway closed the connection; `undefined` if it did not by `deadlineMs`. */
  closedAfterMs: number | undefined
}

/**
 * A raw HTTP/1.1 client for what fetch cannot do: sends `head` (the request line and headers, or only part
 * of them), then `parts` (a string or a function called every 100 ms, never ending), and reports what came
 * back and whether the gateway closed the connection within `deadlineMs`.
 */
function rawRequest(
  resource: string,
  head: string,
  parts: { body?: string | Buffer; drip?: () => string; deadlineMs: number },
): Promise<RawExchange> {
  const url = new URL(resource)
  return new Promise((resolve) => {
    const started = Date.now()
    const socket = connect(Number(url.port), url.hostname)
    let answer = ''
    const drip = parts.drip
      ? setInterval(() => socket.writable && socket.write((parts.drip as () => string)()), 100)
      : undefined
    const finish = (closedAfterMs: number | undefined) => {
      clearInterval(drip)
      clearTimeout(deadline)
      socket.destroy()
      resolve({ answer, closedAfterMs })
    }
    const deadline = setTimeout(() => finish(undefined), parts.deadlineMs)
    socket.on('data', (chunk) => {
      answer += chunk.toString()
    })
    socket.on('error', () => {})
    socket.on('close', () => finish(Date.now() - started))
    socket.write(addressed(head, url))
    if (parts.body !== undefined) socket.write(parts.body)
  })
}

/** `head` with its HOST and PATH placeholders filled in for `url`. */
const addressed = (head: string, url: URL): string =>
  head.replaceAll('HOST', url.host).replaceAll('PATH', url.pathname)

const statusOf = (exchange: RawExchange): number => Number(exchange.answer.split(' ', 2)[1])

const POST_HEAD = (headers: string) =>
  `POST PATH HTTP/1.1\r\nHost: HOST\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n${headers}\r\n`

/** A body that declares a whole MiB and sends all but its last byte, as in the experiment. */
const ONE_BYTE_SHORT = { body: Buffer.alloc(MiB - 1, 0x20), deadlineMs: 3000 }

describe('gateway: a request body is read only once the token is known valid', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let gateway: Gateway
  let token: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
    gateway = await startTestGateway(
      idp,
      { upstream: upstream.url('record') },
      { tools: { add: { scopes: ['math'] } } },
    )
    token = await tokenFor(idp, 'alice', 'mcp')
  })

  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  for (const [name, authorization] of [
    ['no token', ''],
    ['a token that is not valid', 'authorization: Bearer not-a-jwt\r\n'],
  ]) {
    it(`answers 401 to ${name} without waiting for the body, and closes the connection`, async () => {
      const exchange = await rawRequest(
        gateway.resource,
        POST_HEAD(`${authorization}content-length: ${MiB}\r\n`),
        ONE_BYTE_SHORT,
      )
      assert.equal(statusOf(exchange), 401, exchange.answer)
      assert.match(exchange.answer, /\r\nconnection: close\r\n/i)
      assert.ok(exchange.closedAfterMs !== undefined, 'the connection was held open')
      assert.equal(upstream.seen.length, 0)
    })
  }

  it('still reads the body of a valid token and refuses a tool call above its scopes with the one-step challenge', async () => {
    const call = { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'add', arguments: {} } }
    const headers = { authorization: `Bearer ${token}` }
    const refused = await postRpc(gateway.resource, call, headers)
    assert.equal(refused.status, 403)
    const oneStep = await gateway.guard.check(new Request(gateway.resource, { method: 'POST', headers }), {
      scopes: ['math'],
    })
    assert.equal(oneStep.ok, false)
    const expected = (oneStep as { response: Response }).response
    assert.equal(refused.headers.get('www-authenticate'), expected.headers.get('www-authenticate'))
    assert.match(
      refused.headers.get('www-authenticate') as string,
      /error="insufficient_scope".*scope="math"/,
    )
    assert.deepEqual(await refused.json(), await expected.json())
    assert.equal(upstream.seen.length, 0)

    const allowed = await postRpc(gateway.resource, call, {
      authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp math')}`,
    })
    assert.equal(allowed.status, 200)
    assert.equal(upstream.seen.length, 1)
  })
})

describe('gateway: anonymous discovery reads little, and few at once', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let gateway: Gateway

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
    gateway = await startTestGateway(
      idp,
      { upstream: upstream.url('record') },
      {
        allow_anonymous_mcp_discovery: true,
        limits: { max_anonymous_body_bytes: 1024, max_anonymous_body_reads: 2 },
      },
    )
  })

  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  it('serves discovery within the anonymous limit, and answers 401 unread to a larger anonymous body', async () => {
    const discovery = await postRpc(gateway.resource, INITIALIZE)
    assert.equal(discovery.status, 200)
    await discovery.text()
    upstream.seen.length = 0

    const padded = { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { padding: 'x'.repeat(2000) } }
    const declared = await postRpc(gateway.resource, padded)
    assert.equal(declared.status, 401)
    assert.equal(declared.headers.get('connection'), 'close')

    // Chunked, so no length is declared: cut once the limit is crossed, though the body never ends.
    const chunk = 'x'.repeat(2048)
    const streamed = await rawRequest(gateway.resource, POST_HEAD('transfer-encoding: chunked\r\n'), {
      body: `${chunk.length.toString(16)}\r\n${chunk}\r\n`,
      deadlineMs: 3000,
    })
    assert.equal(statusOf(streamed), 401, streamed.answer)
    assert.ok(streamed.closedAfterMs !== undefined, 'the connection was held open')
    assert.equal(upstream.seen.length, 0)
  })

  it('answers 503 to a third anonymous body while two are being read, but not to a signed-in caller', async () => {
    const held = [0, 1].map(() => {
      const url = new URL(gateway.resource)
      const socket = connect(Number(url.port), url.hostname)
      socket.on('error', () => {})
      socket.write(`${addressed(POST_HEAD('transfer-encoding: chunked\r\n'), url)}1\r\n{\r\n`)
      return socket
    })
    try {
      // The two bodies count once the gateway has read their heads; until then a third is simply served.
      const third = await eventually('the two held bodies to be counted', async () => {
        const response = await postRpc(gateway.resource, INITIALIZE)
        if (response.status === 503) return response
        await response.text()
        return undefined
      })
      assert.equal(third.headers.get('retry-after'), '5')
      assert.equal((await third.json()).error.message, 'too many requests without a token; try again later')
      const signedIn = await postRpc(gateway.resource, INITIALIZE, {
        authorization: `Bearer ${await tokenFor(idp, 'bob', 'mcp')}`,
      })
      assert.equal(signedIn.status, 200)
      await signedIn.text()
    } finally {
      for (const socket of held) socket.destroy()
    }
    // Served again once the gateway has seen the held connections close.
    const later = await eventually('the held bodies to be let go', async () => {
      const response = await postRpc(gateway.resource, INITIALIZE)
      if (response.status !== 503) return response
      await response.text()
      return undefined
    })
    assert.equal(later.status, 200)
    await later.text()
  })
})

describe('gateway: header, request and keep-alive timeouts in seconds, not minutes; responses are not limited', () => {
  let idp: TestIdp
  let gateway: Gateway
  let token: string

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, FRAGILE_CHILD] },
      {
        limits: {
          headers_timeout_ms: 300,
          request_timeout_ms: 600,
          keep_alive_timeout_ms: 300,
          upstream_timeout_ms: 10_000,
        },
      },
    )
    token = await tokenFor(idp, 'alice', 'mcp')
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('cuts a client whose headers never end after limits.headers_timeout_ms', async () => {
    const exchange = await rawRequest(gateway.resource, 'POST PATH HTTP/1.1\r\nHost: HOST\r\n', {
      drip: () => 'x-slow: 1\r\n',
      deadlineMs: 3000,
    })
    assert.ok(exchange.closedAfterMs !== undefined, 'the slow-header connection was held open')
    assert.ok(exchange.closedAfterMs >= 250, `cut after ${exchange.closedAfterMs} ms`)
  })

  it('cuts a signed-in chunked body that never ends after limits.request_timeout_ms', async () => {
    const exchange = await rawRequest(
      gateway.resource,
      POST_HEAD(`authorization: Bearer ${token}\r\ntransfer-encoding: chunked\r\n`),
      { drip: () => '1\r\n \r\n', deadlineMs: 3000 },
    )
    assert.ok(exchange.closedAfterMs !== undefined, 'the never-ending body was held open')
    assert.ok(exchange.closedAfterMs >= 550, `cut after ${exchange.closedAfterMs} ms`)
    assert.equal(statusOf(exchange), 408, exchange.answer)
  })

  it('closes an idle keep-alive connection after limits.keep_alive_timeout_ms', async () => {
    const exchange = await rawRequest(gateway.resource, 'GET /healthz HTTP/1.1\r\nHost: HOST\r\n\r\n', {
      deadlineMs: 3000,
    })
    assert.equal(statusOf(exchange), 200)
    assert.ok(exchange.closedAfterMs !== undefined, 'the idle connection was kept')
  })

  it('keeps a GET event stream and a POST tool-call stream open well past the request timeout', async () => {
    const headers = { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-06-18' }
    const initialized = await postRpc(gateway.resource, INITIALIZE, headers)
    assert.equal(initialized.status, 200)
    await initialized.text()
    const session = { ...headers, 'mcp-session-id': initialized.headers.get('mcp-session-id') as string }
    await (
      await postRpc(gateway.resource, { jsonrpc: '2.0', method: 'notifications/initialized' }, session)
    ).body?.cancel()
    const get = await fetch(gateway.resource, { headers: { ...session, accept: 'text/event-stream' } })
    assert.equal(get.status, 200)
    const hang = {
      jsonrpc: '2.0',
      id: 5,
      method: 'tools/call',
      params: { name: 'hang', arguments: {}, _meta: { progressToken: 'p' } },
    }
    const post = await postRpc(gateway.resource, hang, { ...session, accept: 'text/event-stream' })
    assert.equal(post.status, 200)
    assert.equal(post.headers.get('content-type'), 'text/event-stream')
    const streams = [get, post].map((response) => (response.body as ReadableStream).getReader())
    // Each stream opens with its priming event; the POST's then carries the progress notification.
    const [getReader, postReader] = streams as [ReadableStreamDefaultReader, ReadableStreamDefaultReader]
    assert.match(new TextDecoder().decode((await getReader.read()).value), /^id: .*\nretry: \d+\ndata: \n\n$/)
    let posted = ''
    while (!posted.includes('notifications/progress'))
      posted += new TextDecoder().decode((await postReader.read()).value)
    // Both are read until well past request_timeout_ms (and the keep-alive timeout): neither may end.
    const outcome = await Promise.race([
      ...streams.map((reader) =>
        reader.read().then(
          ({ done }) => (done ? 'ended' : 'data'),
          () => 'cut',
        ),
      ),
      sleep(1500).then(() => 'open'),
    ])
    assert.equal(outcome, 'open')
    for (const reader of streams) await reader.cancel()
  })
})

describe('gateway: one user cannot open sessions (child processes) faster than the spawn rates', () => {
  let idp: TestIdp
  let gateway: Gateway
  let log: LogCapture
  const spawned = () => log.lines.filter((line) => line.includes('MCP server process started')).length

  before(async () => {
    idp = await startIdp()
    log = logCapture()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, FRAGILE_CHILD] },
      { sessions: { new_sessions_per_user_per_minute: 3, new_sessions_per_minute: 4 } },
      log,
    )
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  const initialize = async (subject: string) =>
    postRpc(gateway.resource, INITIALIZE, { authorization: `Bearer ${await tokenFor(idp, subject, 'mcp')}` })

  it('answers 429 to a user above its rate, 503 to anyone above the gateway’s, and spawns nothing for them', async () => {
    const flood = await Promise.all(Array.from({ length: 8 }, () => initialize('alice')))
    const statuses = flood.map((r) => r.status)
    assert.equal(statuses.filter((s) => s === 200).length, 3, String(statuses))
    const limited = flood.filter((r) => r.status === 429)
    assert.equal(limited.length, 5, String(statuses))
    for (const response of limited) {
      const retryAfter = Number(response.headers.get('retry-after'))
      assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`)
      assert.equal(
        (await response.json()).error.message,
        'too many new MCP sessions: at most 3 a minute per user; try again later',
      )
    }
    await Promise.all(flood.filter((r) => r.status === 200).map((r) => r.body?.cancel()))
    assert.equal(spawned(), 3)

    const bob = await initialize('bob')
    assert.equal(bob.status, 200)
    await bob.text()
    assert.equal(spawned(), 4)

    const carol = await initialize('carol')
    assert.equal(carol.status, 503)
    const retryAfter = Number(carol.headers.get('retry-after'))
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`)
    assert.equal((await carol.json()).error.message, 'too many MCP sessions; try again later')
    assert.equal(spawned(), 4)
  })
})

describe('gateway: the default per-user session limit keeps one user to 10 children', () => {
  let idp: TestIdp
  let gateway: Gateway
  const log = logCapture()

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, FRAGILE_CHILD] },
      { sessions: { new_sessions_per_user_per_minute: 100 } },
      log,
    )
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('opens 10 sessions for one user and refuses the next ones with 503', { timeout: 30_000 }, async () => {
    const token = await tokenFor(idp, 'alice', 'mcp')
    const statuses: number[] = []
    for (let i = 0; i < 12; i += 1) {
      const response = await postRpc(gateway.resource, INITIALIZE, { authorization: `Bearer ${token}` })
      statuses.push(response.status)
      await response.body?.cancel()
    }
    assert.deepEqual(statuses, [...Array(10).fill(200), 503, 503])
    assert.equal(log.lines.filter((line) => line.includes('MCP server process started')).length, 10)
  })
})
