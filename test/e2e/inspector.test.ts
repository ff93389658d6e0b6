import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { browse, CookieJar } from '../auth-server/harness.ts'
import { freePort } from '../conformance/suite.ts'
import { type DevServe, startDevServe } from '../support/dev-serve.ts'

const INSPECTOR = fileURLToPath(new URL('../../node_modules/.bin/mcp-inspector', import.meta.url))

let serve: DevServe
before(async () => {
  serve = await startDevServe()
})
after(() => serve?.stop())

test('the Inspector CLI runs the whole OAuth flow against gatehouse serve --dev and lists the tools', async () => {
  const port = await freePort()
  const home = await mkdtemp(join(tmpdir(), 'gatehouse-inspector-'))
  const inspector = spawn(
    process.execPath,
    [
      INSPECTOR,
      '--cli',
      serve.resource,
      '--method',
      'tools/list',
      '--callback-url',
      `http://127.0.0.1:${port}/oauth/callback`,
    ],
    {
      // A private HOME keeps the Inspector's stored credentials out of the user's; auto-open makes it print
      // the authorization URL without a terminal, and BROWSER=true keeps it from launching anything.
      env: { PATH: process.env.PATH, HOME: home, MCP_AUTO_OPEN_ENABLED: 'true', BROWSER: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let stdout = ''
  let stderr = ''
  inspector.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  const authorizationUrl = await new Promise<string>((resolve, reject) => {
    inspector.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
      const url = /Please navigate to: (\S+)/.exec(stderr)?.[1]
      if (url) resolve(url)
    })
    inspector.once('exit', (code) => reject(new Error(`the Inspector exited with ${code}: ${stderr}`)))
  })

  const authorization = new URL(authorizationUrl)
  assert.equal(authorization.origin + authorization.pathname, `${serve.issuer}/authorize`)
  assert.equal(authorization.searchParams.get('code_challenge_method'), 'S256')
  assert.equal(authorization.searchParams.get('resource'), serve.resource)

  // The development interactions sign in and approve at once; the browser's last hop is the callback.
  const arrival = await browse(authorizationUrl, new CookieJar())
  const callback = new URL(arrival.headers.get('location') as string)
  assert.equal(callback.searchParams.get('iss'), serve.issuer)
  assert.equal((await fetch(callback)).status, 200)

  const [status] = await once(inspector, 'exit')
  assert.equal(status, 0, stderr)
  const { tools } = JSON.parse(stdout) as { tools: { name: string }[] }
  assert.ok(
    tools.some((tool) => tool.name === 'echo'),
    stdout,
  )
})
