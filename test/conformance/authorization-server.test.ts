import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { type Harness, register, startAuthServer } from '../auth-server/harness.ts'
import { MAIN } from '../support/embedded-gateway.ts'
import { EVERYTHING_BIN } from '../support/gateway-harness.ts'
import { freePort, runAuthorizationSuite, type SuiteRun } from './suite.ts'

// Pinned: 2 metadata checks and 1 authorization-code-grant check in @modelcontextprotocol/conformance 0.2.0-alpha.12.
const METADATA_RESULT = '2 passed, 0 failed'
const TOTAL = 'Total: 3 passed, 0 failed'
// The suite's authorization URL carries no `scope` (RFC 6749 §3.3 leaves it optional); the provider ends such
// a request in access_denied ("no scope was granted") instead of using a default scope. See docs/conformance.md.

for (const { name, path } of [
  { name: 'issuer at the origin', path: '' },
  { name: 'issuer with a path', path: '/oauth' },
]) {
  describe(`MCP conformance suite, authorization scenarios, ${name}`, () => {
    let h: Harness
    let run: SuiteRun

    before(async () => {
      h = await startAuthServer({ path })
      const port = await freePort()
      const { response, body } = await register(h, {
        client_name: 'MCP conformance suite',
        redirect_uris: [`http://127.0.0.1:${port}/callback`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      })
      assert.equal(response.status, 201)
      run = await runAuthorizationSuite({
        issuer: h.issuer,
        clientId: body.client_id as string,
        resource: h.resource,
        port,
      })
    })
    after(() => h?.close())

    test('authorization-server-metadata-endpoint passes every check', () => {
      assert.equal(run.scenarios.get('authorization-server-metadata-endpoint'), METADATA_RESULT)
    })

    test('the whole suite passes: exit status 0', () => {
      assert.equal(run.scenarios.get('authorization-code-grant'), '1 passed, 0 failed')
      assert.equal(run.total, TOTAL)
      assert.equal(run.status, 0)
    })
  })
}

describe('MCP conformance suite, authorization scenarios, against a spawned gatehouse serve --dev', () => {
  let serve: ChildProcess
  let run: SuiteRun

  before(async () => {
    serve = spawn(
      process.execPath,
      [MAIN, 'serve', '--dev', '--port', '0', '--', process.execPath, EVERYTHING_BIN],
      {
        env: { PATH: process.env.PATH },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    )
    const banner = await readBanner(serve)
    const port = await freePort()
    const registration = await fetch(`${banner.issuer}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: [`http://127.0.0.1:${port}/callback`],
        token_endpoint_auth_method: 'none',
      }),
    })
    assert.equal(registration.status, 201)
    const { client_id } = (await registration.json()) as { client_id: string }
    run = await runAuthorizationSuite({
      issuer: banner.issuer,
      clientId: client_id,
      resource: banner.resource,
      port,
    })
  })
  after(async () => {
    if (serve && serve.exitCode === null) {
      serve.kill('SIGTERM')
      await once(serve, 'exit')
    }
  })

  test('authorization-server-metadata-endpoint passes every check', () => {
    assert.equal(run.scenarios.get('authorization-server-metadata-endpoint'), METADATA_RESULT)
  })

  test('the whole suite passes: exit status 0', () => {
    assert.equal(run.total, TOTAL)
    assert.equal(run.status, 0)
  })
})

/** The MCP URL and the issuer from the development banner on stderr. */
async function readBanner(child: ChildProcess): Promise<{ resource: string; issuer: string }> {
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  return new Promise((resolve, reject) => {
    child.stderr?.on('data', (chunk: string) => {
      stderr += chunk
      const resource = /MCP URL: (\S+)/.exec(stderr)?.[1]
      const issuer = /Issuer: +(\S+)/.exec(stderr)?.[1]
      if (resource && issuer) resolve({ resource, issuer })
    })
    child.once('exit', (code) => reject(new Error(`gatehouse serve --dev exited with ${code}: ${stderr}`)))
  })
}
