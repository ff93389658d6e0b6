import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

const REPO = new URL('../../', import.meta.url).pathname

interface Dev {
  child: ChildProcess
  /** What it printed, up to the line that names its URLs. */
  banner: string
  url: string
  metadata: string
}

/**
 * `npm run dev` as a user runs it, in its own process group (npm runs the script through a shell), with the
 * user's environment minus the guard settings and plus `env`.
 */
async function npmRunDev(env: Record<string, string>): Promise<Dev> {
  const { MCP_URL: _url, OAUTH_AUDIENCE: _audience, ...inherited } = process.env
  const child = spawn('npm', ['run', '--silent', 'dev'], {
    cwd: REPO,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let output = ''
  const started = new Promise<Dev>((resolve, reject) => {
    const read = (chunk: Buffer) => {
      output += chunk
      const urls = /MCP server on (\S+), metadata on (\S+)\n/.exec(output)
      if (urls) resolve({ child, banner: output, url: urls[1] as string, metadata: urls[2] as string })
    }
    child.stdout.on('data', read)
    child.stderr.on('data', read)
    child.once('exit', (code) => reject(new Error(`npm run dev exited with ${code}: ${output}`)))
  })
  return started
}

async function stop(dev: Dev | undefined) {
  if (!dev || dev.child.exitCode !== null || dev.child.signalCode !== null) return
  const exited = once(dev.child, 'exit')
  process.kill(-(dev.child.pid as number), 'SIGTERM')
  await exited
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

const postInitialize = (url: string, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    }),
  })

describe('npm run dev: the example protected server, with OAUTH_ISSUER_URL only', { timeout: 60_000 }, () => {
  let idp: TestIdp
  let dev: Dev | undefined
  let url: string

  before(async () => {
    const port = await freePort()
    url = `http://localhost:${port}/mcp`
    idp = await startTestIdp({ resources: { [url]: 'mcp' } })
    dev = await npmRunDev({ OAUTH_ISSUER_URL: idp.issuer, PORT: String(port) })
  })
  after(async () => {
    await stop(dev)
    await idp?.close()
  })

  test('prints its MCP URL and metadata URL', () => {
    assert.equal(dev?.url, url)
    assert.equal(dev?.metadata, `${new URL(url).origin}/.well-known/oauth-protected-resource/mcp`)
  })

  test('without a token /mcp is 401 with a challenge that points to the metadata', async () => {
    const response = await postInitialize(url)
    assert.equal(response.status, 401)
    assert.equal(response.headers.get('www-authenticate'), `Bearer resource_metadata="${dev?.metadata}"`)
  })

  test('the metadata names the MCP URL and the issuer, on the path-inserted and the root well-known', async () => {
    for (const at of [
      dev?.metadata as string,
      `${new URL(url).origin}/.well-known/oauth-protected-resource`,
    ]) {
      const response = await fetch(at)
      assert.equal(response.status, 200, at)
      const metadata = (await response.json()) as Record<string, unknown>
      assert.equal(metadata.resource, url)
      assert.deepEqual(metadata.authorization_servers, [idp.issuer])
    }
  })

  test('with a token from the provider an MCP client lists the tools', async () => {
    const token = await idp.issueToken({ resource: url, scope: 'mcp' })
    const client = new Client({ name: 'npm-run-dev', version: '1.0.0' })
    await client.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    )
    try {
      const { tools } = await client.listTools()
      assert.deepEqual(tools.map((t) => t.name).sort(), ['echo', 'whoami'])
    } finally {
      await client.close()
    }
  })

  test('PORT=0 prints the port it bound, which answers', async () => {
    const any = await npmRunDev({ OAUTH_ISSUER_URL: idp.issuer, PORT: '0' })
    try {
      const port = Number(/^http:\/\/localhost:(\d+)\/mcp$/.exec(any.url)?.[1])
      assert.ok(port > 0, any.banner)
      assert.equal((await postInitialize(any.url)).status, 401)
    } finally {
      await stop(any)
    }
  })

  test('a port in use is one line that says to set PORT', async () => {
    const taken = new URL(url).port
    const child = spawn('npm', ['run', '--silent', 'dev'], {
      cwd: REPO,
      env: { ...process.env, OAUTH_ISSUER_URL: idp.issuer, PORT: taken },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk
    })
    const [code] = await once(child, 'exit')
    assert.notEqual(code, 0)
    assert.equal(stderr, `port ${taken} is in use: set PORT to a free port (PORT=0 picks one)\n`)
  })
})
