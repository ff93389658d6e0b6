import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type Harness, register, startAuthServer } from '../auth-server/harness.ts'
import { type DevServe, startDevServe } from '../support/dev-serve.ts'
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
  let serve: DevServe
  let run: SuiteRun

  before(async () => {
    serve = await startDevServe()
    const port = await freePort()
    const registration = await fetch(`${serve.issuer}/register`, {
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
      issuer: serve.issuer,
      clientId: client_id,
      resource: serve.resource,
      port,
    })
  })
  after(() => serve?.stop())

  test('authorization-server-metadata-endpoint passes every check', () => {
    assert.equal(run.scenarios.get('authorization-server-metadata-endpoint'), METADATA_RESULT)
  })

  test('the whole suite passes: exit status 0', () => {
    assert.equal(run.total, TOTAL)
    assert.equal(run.status, 0)
  })
})
