import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { after, before, describe, it } from 'node:test'
import {
  ALL_SCOPES,
  AUDIENCE,
  connectClient,
  EVERYTHING_BIN,
  NODE,
  processAlive,
  startIdp,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const SERVE = new URL('../../src/cli/serve.ts', import.meta.url).href

describe('gatehouse serve -- <stdio command>', () => {
  let idp: TestIdp

  before(async () => {
    idp = await startIdp()
  })

  after(() => idp?.close())

  it('serves the protected flow from the command line and stops its children on SIGTERM', {
    timeout: 20_000,
  }, async (t) => {
    const serve = spawn(
      NODE,
      [
        '-e',
        `import(${JSON.stringify(SERVE)}).then((m) => m.runServe(process.argv.slice(1)))`,
        '--',
        '--port',
        '0',
        '--',
        NODE,
        EVERYTHING_BIN,
      ],
      {
        env: {
          ...process.env,
          OAUTH_ISSUER_URL: idp.issuer,
          OAUTH_AUDIENCE: AUDIENCE,
          GATEHOUSE_ALLOW_MACHINE_CLIENTS: 'true',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    t.after(() => serve.kill('SIGKILL'))
    const entries: Record<string, unknown>[] = []
    const waiters: [(e: Record<string, unknown>) => boolean, (e: Record<string, unknown>) => void][] = []
    createInterface({ input: serve.stdout }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>
      entries.push(entry)
      for (const [match, resolve] of waiters) if (match(entry)) resolve(entry)
    })
    const logged = (msg: string) =>
      new Promise<Record<string, unknown>>((resolve) => {
        const found = entries.find((e) => e.msg === msg)
        if (found) resolve(found)
        else waiters.push([(e) => e.msg === msg, resolve])
      })

    const { resource } = (await logged('gatehouse gateway listening')) as { resource: string }
    const unauthenticated = await fetch(resource, { method: 'POST' })
    assert.equal(unauthenticated.status, 401)
    const client = await connectClient(resource, await idp.issueToken({ scope: ALL_SCOPES }))
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'cli' } })
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: cli' }])
    const { pid } = (await logged('MCP server process started')) as { pid: number }
    assert.ok(processAlive(pid))

    serve.kill('SIGTERM')
    const [code] = await once(serve, 'exit')
    assert.equal(code, 0)
    assert.equal(processAlive(pid), false)
  })
})
