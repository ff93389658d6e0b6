import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { Gateway } from '../../src/gateway/server.ts'
import { eventually } from '../support/eventually.ts'
import {
  connectClient,
  EVERYTHING_BIN,
  INITIALIZE,
  type LogCapture,
  logCapture,
  NODE,
  postRpc,
  processAlive,
  startIdp,
  startTestGateway,
  tokenFor,
  transportOf,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname

const logged = (log: LogCapture, msg: string): Record<string, unknown>[] =>
  log.lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.msg === msg)

const streamsActive = (gateway: Gateway): number =>
  Number(/^gatehouse_streams_active (-?\d+)$/m.exec(gateway.metrics.render())?.[1])

describe('gateway: stdio bridge streams (resumption, cancellation, idle reaping)', () => {
  let idp: TestIdp
  let everything: Gateway
  let fragile: Gateway
  let reaping: Gateway
  let fragileLog: LogCapture
  let reapingLog: LogCapture
  let token: string

  before(async () => {
    idp = await startIdp()
    fragileLog = logCapture()
    reapingLog = logCapture()
    ;[everything, fragile, reaping] = await Promise.all([
      startTestGateway(idp, { command: [NODE, EVERYTHING_BIN] }),
      // A long upstream timeout: only the client's cancellation can end the hanging call early.
      startTestGateway(
        idp,
        { command: [NODE, FRAGILE_CHILD] },
        { limits: { upstream_timeout_ms: 120_000 } },
        fragileLog,
      ),
      startTestGateway(
        idp,
        { command: [NODE, FRAGILE_CHILD] },
        { sessions: { idle_timeout_seconds: 1 } },
        reapingLog,
      ),
    ])
    token = await tokenFor(idp, 'carol', 'mcp')
  })

  after(async () => {
    await Promise.all([everything?.close(), fragile?.close(), reaping?.close()])
    await idp?.close()
  })

  it('resumes a dropped SSE stream of a long-running tool with Last-Event-ID, losing no event', async () => {
    const resumedFrom: string[] = []
    let dropped = false
    // The first tools/call stream fails right after its first progress event, as a lost connection does.
    const fetchDroppingOnce = async (
      input: string | URL | Request,
      init?: RequestInit,
    ): Promise<Response> => {
      const response = await fetch(input, init)
      const lastEventId = new Headers(init?.headers).get('last-event-id')
      if (lastEventId !== null) resumedFrom.push(lastEventId)
      const isLongCall =
        typeof init?.body === 'string' && init.body.includes('trigger-long-running-operation')
      if (dropped || !isLongCall || response.body === null) return response
      dropped = true
      const reader = response.body.getReader()
      const cut = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read()
          if (done) return controller.close()
          controller.enqueue(value)
          if (new TextDecoder().decode(value).includes('notifications/progress')) {
            controller.error(new Error('connection lost'))
            await reader.cancel()
          }
        },
      })
      return new Response(cut, { status: response.status, headers: response.headers })
    }
    const client = new Client({ name: 'gatehouse-test', version: '1.0.0' })
    client.onerror = () => {}
    await client.connect(
      new StreamableHTTPClientTransport(new URL(everything.resource), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
        fetch: fetchDroppingOnce,
        reconnectionOptions: {
          initialReconnectionDelay: 10,
          maxReconnectionDelay: 100,
          reconnectionDelayGrowFactor: 1,
          maxRetries: 3,
        },
      }),
    )
    const progress: number[] = []
    const result = await client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 5 } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) },
    )
    assert.ok(dropped)
    assert.equal(resumedFrom.length, 1)
    assert.match(resumedFrom[0] as string, /^[0-9a-f-]{36}\/1$/)
    assert.deepEqual(progress, [1, 2, 3, 4, 5])
    assert.match(JSON.stringify(result.content), /Long running operation completed/)
    await client.close()
  })

  it('primes each stream with an id and retry:, so a stream cut before its first event resumes', async () => {
    const client = await connectClient(fragile.resource, token)
    const session = {
      authorization: `Bearer ${token}`,
      'mcp-session-id': transportOf(client).sessionId as string,
      'mcp-protocol-version': '2025-06-18',
    }
    const call = {
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: 'slow', arguments: { ms: 300 } },
    }
    const response = await postRpc(fragile.resource, call, session)
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    const priming = /^id: ([0-9a-f-]{36}\/0)\nretry: (\d+)\ndata: \n\n$/.exec(first)
    assert.ok(priming, `the stream starts with a priming event, not ${JSON.stringify(first)}`)
    assert.equal(priming[2], '1000')
    await reader.cancel()

    const resumed = await fetch(fragile.resource, {
      headers: { ...session, accept: 'text/event-stream', 'last-event-id': priming[1] as string },
    })
    assert.equal(resumed.status, 200)
    const data = (await resumed.text())
      .split('\n')
      .filter((line) => line.startsWith('data: ') && line.length > 'data: '.length)
      .map((line) => JSON.parse(line.slice('data: '.length)))
    assert.deepEqual(data, [
      { jsonrpc: '2.0', id: 7, result: { content: [{ type: 'text', text: 'slow done' }] } },
    ])
    await client.close()
  })

  it('answers a resumption naming no kept stream with 400', async () => {
    const client = await connectClient(everything.resource, token)
    const response = await fetch(everything.resource, {
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'text/event-stream',
        'mcp-session-id': transportOf(client).sessionId as string,
        'mcp-protocol-version': '2025-06-18',
        'last-event-id': `${crypto.randomUUID()}/1`,
      },
    })
    assert.equal(response.status, 400)
    assert.deepEqual(await response.json(), {
      jsonrpc: '2.0',
      id: null,
      error: { code: -32000, message: 'Bad Request: Last-Event-ID names no stream this session keeps' },
    })
    await client.close()
  })

  it('forwards a client-side cancellation to the child and ends the request stream', async () => {
    const client = await connectClient(fragile.resource, token)
    const controller = new AbortController()
    await assert.rejects(
      client.callTool({ name: 'hang', arguments: {} }, undefined, {
        signal: controller.signal,
        // The child is working on the call once it reports progress: cancel then.
        onprogress: () => controller.abort(new Error('changed my mind')),
      }),
      // The SDK rejects an aborted request with its own timeout code, whatever the reason.
      { code: -32001, message: 'MCP error -32001: Error: changed my mind' },
    )
    const [cancelled] = await eventually('the child to report the cancellation', () => {
      const lines = logged(fragileLog, 'MCP server stderr').filter((e) =>
        String(e.stderr).startsWith('cancelled'),
      )
      return lines.length > 0 ? lines : undefined
    })
    assert.match(String(cancelled?.stderr), /^cancelled \d+$/)
    // Only the client's GET stream is left once the cancelled call's stream ended.
    await eventually('the cancelled request stream to end', () =>
      streamsActive(fragile) <= 1 ? true : undefined,
    )
    assert.deepEqual((await client.callTool({ name: 'garbage', arguments: {} })).content, [
      { type: 'text', text: 'called garbage' },
    ])
    await client.close()
  })

  it('reaps an idle session: its child process ends and its id answers 404', async () => {
    const initialized = await postRpc(reaping.resource, INITIALIZE, { authorization: `Bearer ${token}` })
    assert.equal(initialized.status, 200)
    const sessionId = initialized.headers.get('mcp-session-id') as string
    const started = logged(reapingLog, 'MCP server process started').find((e) => e.session === sessionId)
    const pid = started?.pid as number
    assert.equal(typeof pid, 'number')
    await eventually('the session to be reaped', () =>
      logged(reapingLog, 'idle session reaped').some((e) => e.session === sessionId) ? true : undefined,
    )
    await eventually('the child process to end', () => (processAlive(pid) ? undefined : true))
    const reused = await postRpc(
      reaping.resource,
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
    )
    assert.equal(reused.status, 404)
    assert.deepEqual(await reused.json(), {
      jsonrpc: '2.0',
      id: 2,
      error: { code: -32000, message: 'Session not found' },
    })
  })
})
