import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  ALL_SCOPES,
  INITIALIZE,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname

const call = (id: number, name: string) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: {} },
})

describe('gateway: limits.max_batch_messages', () => {
  let idp: TestIdp
  let gateway: Gateway
  let token: string

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, FRAGILE_CHILD] },
      { limits: { max_batch_messages: 3 } },
    )
    token = await tokenFor(idp, 'alice', ALL_SCOPES)
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('answers a batch over the limit with 400 before the server sees any of it', async () => {
    const initialized = await postRpc(gateway.resource, INITIALIZE, { authorization: `Bearer ${token}` })
    const headers = {
      authorization: `Bearer ${token}`,
      'mcp-session-id': initialized.headers.get('mcp-session-id') as string,
      'mcp-protocol-version': '2025-06-18',
      accept: 'application/json',
    }
    // `crash` ends the child: had one of these reached it, the session would be gone.
    const over = await postRpc(
      gateway.resource,
      [1, 2, 3, 4].map((id) => call(id, 'crash')),
      headers,
    )
    assert.equal(over.status, 400)
    assert.deepEqual(await over.json(), {
      jsonrpc: '2.0',
      id: null,
      error: {
        code: -32600,
        message: 'the batch has 4 messages, more than limits.max_batch_messages (3)',
      },
    })
    const within = await postRpc(
      gateway.resource,
      [1, 2, 3].map((id) => call(id, 'garbage')),
      headers,
    )
    assert.equal(within.status, 200)
    assert.deepEqual(
      (await within.json()).map((m: { id: number; result: unknown }) => [m.id, m.result]),
      [1, 2, 3].map((id) => [id, { content: [{ type: 'text', text: 'called garbage' }] }]),
    )
  })
})
