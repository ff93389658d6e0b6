import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  connectClient,
  EVERYTHING_BIN,
  INITIALIZE,
  logCapture,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

/** What the gateway's own environment holds and a stdio child must never see. */
const GATEWAY_SECRETS = {
  GATEHOUSE_SECRET: 'gateway-secret-that-no-child-may-read-0123',
  GATEHOUSE_STORAGE_URL: 'postgres://gatehouse:db-password-123@db/gatehouse',
  OAUTH_CLIENT_SECRET: 'oauth-client-secret-456',
  UNRELATED_API_KEY: 'api-key-789',
}

describe('gateway: what a stdio child sees of the gateway', () => {
  let idp: TestIdp
  let gateway: Gateway
  let missing: Gateway
  const log = logCapture()

  before(async () => {
    Object.assign(process.env, GATEWAY_SECRETS)
    idp = await startIdp()
    ;[gateway, missing] = await Promise.all([
      startTestGateway(
        idp,
        { command: [NODE, EVERYTHING_BIN] },
        { env: { GREETING: 'configured value', GATEHOUSE_NAMED: 'named on purpose' } },
      ),
      startTestGateway(idp, { command: ['/nonexistent/mcp-server', '--api-key=hunter2'] }, {}, log),
    ])
  })

  after(async () => {
    for (const name of Object.keys(GATEWAY_SECRETS)) delete process.env[name]
    await Promise.all([gateway?.close(), missing?.close()])
    await idp?.close()
  })

  it("get-env shows the allow-listed and configured variables, never the gateway's secrets", async () => {
    const client = await connectClient(gateway.resource, await idp.issueToken({ scope: 'mcp' }))
    const result = await client.callTool({ name: 'get-env', arguments: {} })
    const text = (result.content as { type: string; text: string }[])[0]?.text ?? ''
    const env = JSON.parse(text) as Record<string, string>
    assert.equal(env.GREETING, 'configured value')
    assert.equal(env.GATEHOUSE_NAMED, 'named on purpose')
    assert.equal(env.PATH, process.env.PATH)
    for (const [name, value] of Object.entries(GATEWAY_SECRETS)) {
      assert.equal(env[name], undefined, name)
      assert.ok(!text.includes(value), name)
    }
    await client.close()
  })

  it('a failed spawn gives the client a fixed message and keeps the command line in the log', async () => {
    const response = await postRpc(missing.resource, INITIALIZE, {
      authorization: `Bearer ${await idp.issueToken({ scope: 'mcp' })}`,
    })
    const body = await response.text()
    assert.match(body, /the MCP server process could not be started/)
    assert.ok(!body.includes('/nonexistent/mcp-server'), body)
    assert.ok(!body.includes('hunter2'), body)
    assert.ok(
      log.lines.some((line) => line.includes('/nonexistent/mcp-server') && line.includes('could not start')),
    )
  })
})
