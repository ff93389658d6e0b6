import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { it } from 'node:test'
import { MAIN, tempDir } from '../support/embedded-gateway.ts'
import { NODE, postRpc } from '../support/gateway-harness.ts'

/** Starts `gatehouse demo` (what `npm start` runs) and resolves with the MCP URL and the rest of what it prints. */
async function startDemo(dataDir: string) {
  const demo = spawn(NODE, [MAIN, 'demo', '--port', '0', '--data-dir', dataDir], {
    env: { PATH: process.env.PATH, OAUTH_ISSUER_URL: 'https://ignored.example.com' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: string[] = []
  // The banner is complete at its last line.
  const printed = await new Promise<string>((resolve, reject) => {
    createInterface({ input: demo.stdout }).on('line', (line) => {
      lines.push(line)
      if (line === 'Press Ctrl+C to stop.') resolve(lines.join('\n'))
    })
    demo.once('exit', (code) => reject(new Error(`the demo exited with ${code}: ${lines.join('\n')}`)))
  })
  const mcpUrl = /^ {2}MCP URL: {2}(\S+)$/m.exec(printed)?.[1] ?? assert.fail(printed)
  return { demo, mcpUrl, printed }
}

it('npm start: the demo serves a protected MCP URL, creates the demo user once and stops cleanly on SIGTERM', {
  timeout: 20_000,
}, async (t) => {
  const dataDir = await tempDir('demo')
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  for (const run of ['first', 'second']) {
    const { demo, mcpUrl, printed } = await startDemo(dataDir)
    t.after(() => demo.kill('SIGKILL'))
    const challenge = await postRpc(mcpUrl, { jsonrpc: '2.0', id: 1, method: 'tools/list' })
    assert.equal(challenge.status, 401)
    const origin = new URL(mcpUrl).origin
    const prm = (await (await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<
      string,
      unknown
    >
    assert.equal(prm.resource, mcpUrl)
    assert.deepEqual(prm.authorization_servers, [origin])
    if (run === 'first') assert.match(printed, /Sign in as "demo" with the password [\w-]{16}\n/)
    else assert.match(printed, /Sign in as "demo" with the password printed on the first start\./)
    demo.kill('SIGTERM')
    const [code] = await once(demo, 'exit')
    assert.equal(code, 0)
  }
})
