/**
 * The first run of `gatehouse serve`: each usual mistake gets one line that says what to change, and the
 * start-up log says which authorization server runs and whether the upstream answers.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, it } from 'node:test'
import { gatehouse, MAIN, tempDir } from '../support/embedded-gateway.ts'
import { EVERYTHING_BIN, NODE } from '../support/gateway-harness.ts'

const listening = async (server: Server): Promise<number> => {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer()
  const port = await listening(server)
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * `gatehouse serve` (not --dev) until its log matches `awaited` (by default the authorization-server line, after
 * which the upstream probe runs), then a second more for a probe that logs nothing; then stopped.
 */
async function startLog(
  upstream: string,
  awaited = /own authorization server/,
): Promise<{ lines: { level: number; msg: string }[] }> {
  const dataDir = await tempDir('first-run')
  const child = spawn(NODE, [MAIN, 'serve', '--port', '0', '--data-dir', dataDir, '--upstream', upstream], {
    env: { PATH: process.env.PATH, GATEHOUSE_SECRET: 'x'.repeat(32) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk
  })
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk
  })
  // A loaded machine can take seconds to start it and to log the probe's outcome: wait for the line itself.
  const deadline = Date.now() + 20_000
  while (!awaited.test(output) && Date.now() < deadline) await sleep(50)
  await sleep(1000)
  child.kill('SIGTERM')
  await once(child, 'exit')
  const lines = output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string })
  return { lines }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('gatehouse serve: the first run', { timeout: 120_000 }, () => {
  const servers: Server[] = []
  after(() => {
    for (const server of servers) server.close()
  })

  it('a port already in use: one line naming the port and --port', async () => {
    const taken = createServer()
    servers.push(taken)
    const port = await listening(taken)
    const { code, stderr } = await gatehouse([
      'serve',
      '--dev',
      '--port',
      String(port),
      '--',
      NODE,
      EVERYTHING_BIN,
    ])
    assert.equal(code, 1)
    assert.equal(
      stderr.trim().split('\n').at(-1),
      `gatehouse: port ${port} on 127.0.0.1 is in use: choose another with --port (GATEHOUSE_PORT), or stop what listens there`,
    )
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace')
  })

  it('a stdio command that is not there: one line, and the gateway never listens', async () => {
    const missing = await gatehouse(['serve', '--dev', '--port', '0', '--', 'gatehouse-no-such-command'])
    assert.equal(missing.code, 1)
    assert.match(
      missing.stderr,
      /^gatehouse: the stdio command "gatehouse-no-such-command" is not on PATH \(.*\): install it, or give its full path after --/m,
    )
    assert.doesNotMatch(missing.stderr, /listening/)
    const path = await gatehouse(['serve', '--dev', '--port', '0', '--', '/nonexistent/mcp-server'])
    assert.equal(path.code, 1)
    assert.match(
      path.stderr,
      /the stdio command \/nonexistent\/mcp-server does not exist or is not executable/,
    )
  })

  it('an upstream that does not answer: a warning at start naming it and --upstream', async () => {
    const port = await closedPort()
    const { lines } = await startLog(`http://127.0.0.1:${port}/mcp`, /does not answer/)
    const warning = lines.find((line) => /does not answer/.test(line.msg))
    assert.equal(warning?.level, 40)
    assert.equal(
      warning?.msg,
      `the upstream http://127.0.0.1:${port}/mcp does not answer (ECONNREFUSED): start it or fix --upstream (GATEHOUSE_UPSTREAM); until it answers, MCP requests get 502`,
    )
  })

  it('an upstream that answers (even 405): no warning; no OAUTH_ISSUER_URL: one line naming the embedded issuer', async () => {
    const upstream = createServer((_req, res) => res.writeHead(405).end())
    servers.push(upstream)
    const port = await listening(upstream)
    const { lines } = await startLog(`http://127.0.0.1:${port}/mcp`)
    assert.equal(lines.filter((line) => /does not answer/.test(line.msg)).length, 0)
    const listeningLine = lines.find((line) => line.msg === 'gatehouse gateway listening') as
      | { resource: string }
      | undefined
    const issuer = new URL(listeningLine?.resource ?? 'http://missing').origin
    assert.ok(
      lines.some(
        (line) =>
          line.msg ===
          `no OAUTH_ISSUER_URL: gatehouse runs its own authorization server at ${issuer} (accounts: gatehouse users add <name>); set OAUTH_ISSUER_URL to use your identity provider instead`,
      ),
    )
  })
})
