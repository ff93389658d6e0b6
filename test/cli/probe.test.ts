/**
 * `gatehouse probe`: the MCP conformance suite's client scenarios run on it (the auth and backcompat suites,
 * about 15 s together), and a walk through `gatehouse serve --dev` to tools/list.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { startDevServe } from '../support/dev-serve.ts'
import { gatehouse, MAIN, tempDir } from '../support/embedded-gateway.ts'

const CONFORMANCE = fileURLToPath(new URL('../../node_modules/.bin/conformance', import.meta.url))

/** The runner appends the server URL to the command; a script keeps the probe's own flags in one place. */
async function probeCommand(dir: string): Promise<string> {
  const script = join(dir, 'probe.sh')
  await writeFile(
    script,
    `#!/bin/sh\nexec "${process.execPath}" "${MAIN}" probe --non-interactive --call-tool test-tool ` +
      `--client-id-metadata-url https://conformance-test.local/client-metadata.json "$@"\n`,
  )
  await chmod(script, 0o755)
  return script
}

async function runSuite(suite: string, dir: string): Promise<string> {
  const child = spawn(
    process.execPath,
    [CONFORMANCE, 'client', '--command', await probeCommand(dir), '--suite', suite, '-o', join(dir, suite)],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATH: process.env.PATH } },
  )
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk
  })
  child.stderr.resume()
  await once(child, 'exit')
  return output.slice(output.indexOf('=== SUITE SUMMARY ==='))
}

describe('the conformance suite on gatehouse probe', () => {
  for (const [suite, scenarios] of [
    ['auth', 14],
    ['backcompat', 2],
  ] as const) {
    test(`the ${suite} suite passes every scenario`, { timeout: 120_000 }, async () => {
      const summary = await runSuite(suite, await tempDir(`conformance-${suite}`))
      const passed = summary.match(/^✓ /gm)?.length ?? 0
      assert.equal(passed, scenarios, summary)
      assert.match(summary, /Total: \d+ passed, 0 failed/, summary)
    })
  }
})

describe('gatehouse probe against gatehouse serve --dev', () => {
  let serve: Awaited<ReturnType<typeof startDevServe>>
  before(async () => {
    serve = await startDevServe()
  })
  after(() => serve.stop())

  test('walks 401, PRM, metadata, DCR, authorization, iss and state, token, initialize and tools/list', async () => {
    const { code, stdout, stderr } = await gatehouse(['probe', '--non-interactive', serve.resource])
    assert.equal(code, 0, stderr)
    const steps = stdout.split('\n').map((line) => line.slice(2, 16).trim())
    assert.deepEqual(steps.filter(Boolean), [
      '401',
      'PRM',
      'AS metadata',
      'registration',
      'authorize',
      'callback',
      'token',
      'initialize',
      'tools/list',
    ])
    assert.match(stdout, /callback +state matches, iss matches/)
    assert.match(stdout, new RegExp(`token .*JWT access token, aud "${serve.resource}"`))
    assert.match(stdout, /tools\/list +\d+ tools: echo/)
  })

  test('a server that is not there fails with the step and the fix, exit 1', async () => {
    const { code, stderr } = await gatehouse(['probe', '--non-interactive', 'http://127.0.0.1:1/mcp'])
    assert.equal(code, 1)
    assert.match(stderr, /^gatehouse: /)
  })
})
