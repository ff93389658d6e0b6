import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { it, type TestContext } from 'node:test'
import { tempDir } from '../support/embedded-gateway.ts'
import { eventually } from '../support/eventually.ts'
import { connectClient, freePort, INITIALIZE, postRpc, transportOf } from '../support/gateway-harness.ts'
import { startSdkHttpUpstream } from '../support/sdk-http-upstream.ts'
import { createUsers, refresh, signIn, startServeChild } from '../support/serve-child.ts'

/** A Redis server of the test's own on a free port, which it can stop and start again (nothing persisted). */
async function ownRedis(t: TestContext, dir: string) {
  const port = await freePort()
  let child: ChildProcess | undefined
  const start = async () => {
    const started = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    )
    let output = ''
    await new Promise<void>((resolve, reject) => {
      started.stdout?.on('data', (chunk: Buffer) => {
        output += chunk
        if (output.includes('Ready to accept connections')) resolve()
      })
      started.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)))
    })
    started.stdout?.resume()
    child = started
  }
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGKILL')
    await exited
  }
  await start()
  t.after(stop)
  return { url: `redis://127.0.0.1:${port}/0`, start, stop }
}

it('Redis down: session checks and new sessions get 503 (never memory), tokens 503; all resumes when it is back', {
  timeout: 90_000,
}, async (t) => {
  const dataDir = await tempDir('redis-down')
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  const redis = await ownRedis(t, dataDir)
  const upstream = await startSdkHttpUpstream()
  t.after(() => upstream.close())
  const options = {
    dataDir,
    upstream: upstream.url,
    settings: { shared_state: { redis_url: redis.url, key_prefix: 'down:' } },
  }
  await createUsers(options, ['gus'])
  const serve = await startServeChild(options)
  t.after(() => serve.stop('SIGKILL'))
  const tokens = await signIn(serve.issuer, serve.resource, 'gus', '10.40.0.1')
  const client = await connectClient(serve.resource, tokens.access_token)
  await client.callTool({ name: 'echo', arguments: { message: 'before' } })
  const session = transportOf(client).sessionId as string
  const calls = upstream.calls.length

  await redis.stop()
  const auth = { authorization: `Bearer ${tokens.access_token}`, 'mcp-protocol-version': '2025-06-18' }
  const call = {
    jsonrpc: '2.0',
    id: 5,
    method: 'tools/call',
    params: { name: 'echo', arguments: { message: 'x' } },
  }
  const inSession = await postRpc(serve.resource, call, { ...auth, 'mcp-session-id': session })
  assert.equal(inSession.status, 503)
  assert.equal(inSession.headers.get('retry-after'), '5')
  assert.deepEqual(await inSession.json(), {
    jsonrpc: '2.0',
    id: 5,
    error: {
      code: -32000,
      message: 'session state shared by the instances is unreachable; try again shortly',
    },
  })
  const opening = await postRpc(serve.resource, INITIALIZE, auth)
  assert.equal(opening.status, 503)
  await opening.arrayBuffer()
  // The token endpoint's rate limit counts in Redis: refused as an outage, not a server error.
  const refreshed = await refresh(serve.issuer, tokens.refresh_token)
  assert.equal(refreshed.status, 503)
  assert.equal(refreshed.body.error, 'temporarily_unavailable')
  assert.equal(upstream.calls.length, calls, 'the upstream saw a call while Redis was down')

  await redis.start()
  // The client reconnects by itself (its retries up to 2 s apart); the session binding was lost with the
  // unpersisted Redis.
  await eventually('a session to open once Redis is back', async () => {
    const answer = await postRpc(serve.resource, INITIALIZE, auth)
    await answer.arrayBuffer()
    return answer.status === 200 ? true : undefined
  })
  assert.equal((await refresh(serve.issuer, tokens.refresh_token)).status, 200)
  const again = await connectClient(serve.resource, tokens.access_token)
  await again.callTool({ name: 'echo', arguments: { message: 'after' } })
  await again.close()
  await client.close()
  assert.ok(
    serve.log.some((line) => line.includes('shared state unreachable')),
    'the outage was not logged',
  )
})
