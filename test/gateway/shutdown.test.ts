import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, it } from 'node:test'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { tempDir } from '../support/embedded-gateway.ts'
import {
  ALL_SCOPES,
  connectClient,
  logCapture,
  NODE,
  postRpc,
  processAlive,
  startIdp,
  startTestGateway,
  transportOf,
} from '../support/gateway-harness.ts'
import { startToolUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const SERVE = new URL('../../src/cli/serve.ts', import.meta.url).href
const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname
/** Long enough that the 600 ms call in flight is answered within it however loaded the machine. */
const GRACE_MS = 3000

type LogEntry = Record<string, unknown>

interface Serve {
  child: ChildProcess
  resource: string
  /** Resolves with the `times`-th log entry that matches. */
  logged(match: (entry: LogEntry) => boolean, times?: number): Promise<LogEntry>
}

/**
 * `gatehouse serve` as a process group of its own, as a shell or `npm start` runs it, so the test can signal
 * the whole group the way Ctrl-C or `docker stop` through npm does.
 */
async function startServe(idp: TestIdp, args: string[], cleanup: (fn: () => void) => void): Promise<Serve> {
  const config = join(await tempDir('shutdown'), 'gatehouse.json')
  await writeFile(config, JSON.stringify({ limits: { shutdown_grace_ms: GRACE_MS } }))
  const child = spawn(
    NODE,
    [
      '-e',
      `import(${JSON.stringify(SERVE)}).then((m) => m.runServe(process.argv.slice(1)))`,
      '--',
      '--port',
      '0',
      '--config',
      config,
      ...args,
    ],
    {
      env: {
        ...process.env,
        OAUTH_ISSUER_URL: idp.issuer,
        OAUTH_AUDIENCE: 'https://mcp.gatehouse.test/mcp',
        GATEHOUSE_ALLOW_MACHINE_CLIENTS: 'true',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    },
  )
  cleanup(() => child.kill('SIGKILL'))
  const entries: LogEntry[] = []
  const waiters = new Set<() => void>()
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    entries.push(JSON.parse(line) as LogEntry)
    for (const check of waiters) check()
  })
  const logged = (match: (e: LogEntry) => boolean, times = 1) =>
    new Promise<LogEntry>((resolve) => {
      const check = () => {
        const found = entries.filter(match)[times - 1]
        if (found === undefined) return
        waiters.delete(check)
        resolve(found)
      }
      waiters.add(check)
      check()
    })
  const { resource } = (await logged((e) => e.msg === 'gatehouse gateway listening')) as { resource: string }
  return { child, resource, logged }
}

/** SIGTERM to the gateway's whole process group; resolves with its exit code and when the signal went. */
async function terminateGroup(serve: Serve): Promise<{ signalled: number; exited: Promise<number | null> }> {
  const exited = once(serve.child, 'exit').then(([code]) => code as number | null)
  const signalled = performance.now()
  process.kill(-(serve.child.pid as number), 'SIGTERM')
  return { signalled, exited }
}

/** Whether a new connection to the gateway's port is refused. */
function refusesConnections(resource: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(resource).port), '127.0.0.1')
    socket.on('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}

/** A call that fails, as the error the client read; a reset or any other failure makes the test fail. */
async function rpcFailure(call: Promise<unknown>): Promise<{ error: McpError; at: number }> {
  const error = await call.then(
    (result) => assert.fail(`expected a JSON-RPC error, got ${JSON.stringify(result)}`),
    (error: unknown) => error,
  )
  assert.ok(error instanceof McpError, `expected a JSON-RPC error, got ${String(error)}`)
  return { error, at: performance.now() }
}

const slowCall = (client: Client) => client.callTool({ name: 'slow', arguments: { ms: 600 } })

describe('gatehouse serve: SIGTERM with calls in flight', () => {
  let idp: TestIdp
  let token: string

  before(async () => {
    idp = await startIdp()
    token = await idp.issueToken({ scope: ALL_SCOPES })
  })

  after(() => idp?.close())

  it('stdio: drains calls within shutdown_grace_ms, answers a hanging one with an error, then stops the child', {
    timeout: 30_000,
  }, async (t) => {
    const serve = await startServe(idp, ['--', NODE, FRAGILE_CHILD], (fn) => t.after(fn))
    const client = await connectClient(serve.resource, token)
    const { pid } = (await serve.logged((e) => e.msg === 'MCP server process started')) as { pid: number }
    const sessionId = transportOf(client).sessionId as string
    const started = (name: string, times = 1) => serve.logged((e) => e.stderr === `started ${name}`, times)

    const slow = slowCall(client)
    const hang = rpcFailure(client.callTool({ name: 'hang', arguments: {} }))
    // The same hanging call answered as JSON rather than on an SSE stream.
    const hangJson = postRpc(
      serve.resource,
      { jsonrpc: '2.0', id: 77, method: 'tools/call', params: { name: 'hang', arguments: {} } },
      {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-06-18',
      },
    )
    await Promise.all([started('slow'), started('hang', 2)])

    const { signalled, exited } = await terminateGroup(serve)
    // The child ran on through the grace (the group's SIGTERM did not reach it) and its answer came back.
    assert.deepEqual((await slow).content, [{ type: 'text', text: 'slow done' }])
    assert.equal(processAlive(pid), true)
    assert.equal(await refusesConnections(serve.resource), true)

    const { error, at } = await hang
    assert.equal(error.code, -32000)
    assert.match(error.message, /the gateway is shutting down/)
    assert.ok(at - signalled >= GRACE_MS - 100, `answered ${Math.round(at - signalled)} ms after SIGTERM`)
    const json = await hangJson
    assert.equal(json.status, 200)
    assert.deepEqual(await json.json(), {
      jsonrpc: '2.0',
      id: 77,
      error: { code: -32000, message: 'the gateway is shutting down' },
    })

    assert.equal(await exited, 0)
    assert.equal(processAlive(pid), false)
  })

  it('HTTP upstream: drains SSE calls, answers hanging ones with an error event or a 503, then exits', {
    timeout: 30_000,
  }, async (t) => {
    const upstream = await startToolUpstream()
    t.after(() => upstream.close())
    const serve = await startServe(idp, ['--upstream', upstream.url], (fn) => t.after(fn))
    const client = await connectClient(serve.resource, token)
    const sessionId = transportOf(client).sessionId as string

    const slow = slowCall(client)
    const hang = rpcFailure(client.callTool({ name: 'hang', arguments: {} }))
    const silent = postRpc(
      serve.resource,
      { jsonrpc: '2.0', id: 78, method: 'tools/call', params: { name: 'silent', arguments: {} } },
      { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
    )
    await Promise.all(['slow', 'hang', 'silent'].map((name) => upstream.started(name)))

    const { signalled, exited } = await terminateGroup(serve)
    assert.deepEqual((await slow).content, [{ type: 'text', text: 'slow done' }])
    const { error, at } = await hang
    assert.equal(error.code, -32000)
    assert.match(error.message, /the gateway is shutting down/)
    assert.ok(at - signalled >= GRACE_MS - 100, `answered ${Math.round(at - signalled)} ms after SIGTERM`)
    const refused = await silent
    assert.equal(refused.status, 503)
    assert.deepEqual(await refused.json(), {
      jsonrpc: '2.0',
      id: 78,
      error: { code: -32000, message: 'the gateway is shutting down' },
    })
    assert.equal(await exited, 0)
  })
})

describe('gateway: an HTTP upstream whose SSE event is not JSON-RPC', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startToolUpstream>>

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startToolUpstream()])
  })

  after(async () => {
    await upstream?.close()
    await idp?.close()
  })

  it('ends the stream with a JSON-RPC error for the pending id, and logs it', async (t) => {
    const log = logCapture()
    const gateway = await startTestGateway(idp, { upstream: upstream.url }, {}, log)
    t.after(() => gateway.close())
    const token = await idp.issueToken({ scope: ALL_SCOPES })
    const client = await connectClient(gateway.resource, token)
    const { error } = await rpcFailure(client.callTool({ name: 'garbage', arguments: {} }))
    assert.equal(error.code, -32603)
    assert.match(error.message, /not JSON-RPC/)

    const raw = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 'g1', method: 'tools/call', params: { name: 'garbage', arguments: {} } },
      {
        authorization: `Bearer ${token}`,
        'mcp-session-id': transportOf(client).sessionId as string,
        'mcp-protocol-version': '2025-06-18',
      },
    )
    assert.equal(raw.headers.get('content-type'), 'text/event-stream')
    // The stream ends (text() resolves), its one event the error for the request's id; the garbage never passes.
    const body = await raw.text()
    assert.doesNotMatch(body, /this is not JSON-RPC/)
    const events = body.split('\n').filter((line) => line.startsWith('data: '))
    assert.deepEqual(
      events.map((line) => JSON.parse(line.slice(6))),
      [
        {
          jsonrpc: '2.0',
          id: 'g1',
          error: { code: -32603, message: 'the MCP server answered with something that is not JSON-RPC' },
        },
      ],
    )
    const failures = log.lines.map((l) => JSON.parse(l)).filter((e) => e.msg === 'upstream request failed')
    assert.equal(failures.length, 2)
    assert.equal(failures[0].kind, 'garbage')
  })
})
