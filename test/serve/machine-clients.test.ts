import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { basic, token } from '../auth-server/harness.ts'
import { asHarness, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { connectClient, INITIALIZE, postRpc } from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'

const BOT = { client_id: 'ci-bot', client_secret: 'ci-bot-secret-ci-bot-secret-0123' }
const declared = (extra: Record<string, unknown> = {}) => ({
  authorization_server: {
    clients: [
      { ...BOT, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: 'mcp' },
    ],
  },
  ...extra,
})

async function machineToken(gateway: Gateway): Promise<string> {
  const { response, body } = await token(
    asHarness(gateway),
    { grant_type: 'client_credentials', scope: 'mcp', resource: gateway.resource },
    basic(BOT.client_id, BOT.client_secret),
  )
  assert.equal(response.status, 200, JSON.stringify(body))
  return body.access_token as string
}

describe('tokens without a user (client credentials) at /mcp', () => {
  let dataDir: string
  const gateways: Gateway[] = []
  before(async () => {
    dataDir = await tempDir('machine')
  })
  after(async () => {
    for (const gateway of gateways) await gateway.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('are refused with 403 unless the operator allows machine clients; the upstream sees nothing', async () => {
    const upstream = await startOddUpstream()
    try {
      const gateway = await startEmbeddedGateway(
        { dataDir: `${dataDir}/refused`, upstream: upstream.url('record'), command: undefined },
        declared(),
      )
      gateways.push(gateway)
      const bot = await machineToken(gateway)
      const response = await postRpc(gateway.resource, INITIALIZE, { authorization: `Bearer ${bot}` })
      assert.equal(response.status, 403)
      const body = (await response.json()) as { error: { message: string } }
      assert.match(
        body.error.message,
        /does not accept tokens a client obtained for itself \(client credentials\)/,
      )
      assert.equal(upstream.seen.length, 0)
    } finally {
      await upstream.close()
    }
  })

  it('when allowed, see and call only what their scopes allow and never a users_only tool', async () => {
    const gateway = await startEmbeddedGateway(
      { dataDir: `${dataDir}/allowed` },
      declared({ allow_machine_clients: true, tools: { 'get-env': { users_only: true } } }),
    )
    gateways.push(gateway)
    const client = await connectClient(gateway.resource, await machineToken(gateway))
    try {
      const names = (await client.listTools()).tools.map((tool) => tool.name)
      assert.ok(names.includes('echo'), names.join(', '))
      assert.ok(!names.includes('get-env'), 'the users_only tool is hidden from a machine client')
      const echoed = await client.callTool({ name: 'echo', arguments: { message: 'from the bot' } })
      assert.match(JSON.stringify(echoed.content), /from the bot/)
      await assert.rejects(
        client.callTool({ name: 'get-env', arguments: {} }),
        /may be called only on behalf of a signed-in user/,
      )
    } finally {
      await client.close()
    }
  })
})
