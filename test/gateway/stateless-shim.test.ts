/**
 * The stdio bridge's 2026-07-28 shim on what the conformance suite found it lacking (test/conformance/
 * server-through-gateway.test.ts, draft suite): `Mcp-Name` is required where the body names a tool, prompt
 * or resource, and a 2025 server's unknown-resource error becomes the revision's invalid-params one.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  type LogCapture,
  logCapture,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const RAW_CHILD = new URL('../support/stdio-raw-child.ts', import.meta.url).pathname
const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': {},
}

describe('gateway: the stdio bridge under 2026-07-28, Mcp-Name and resource-not-found', () => {
  let idp: TestIdp
  let gateway: Gateway
  let log: LogCapture
  let headers: Record<string, string>

  before(async () => {
    idp = await startIdp()
    log = logCapture()
    gateway = await startTestGateway(idp, { command: [NODE, RAW_CHILD] }, {}, log)
    headers = {
      authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp')}`,
      accept: 'application/json',
      'mcp-protocol-version': '2026-07-28',
    }
  })
  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  const called = () => log.lines.filter((line) => /"stderr":"called /.test(line)).length

  it('a tools/call, prompts/get or resources/read without Mcp-Name is 400 -32020, and never reaches the child', async () => {
    for (const [method, params] of [
      ['tools/call', { name: 'echo', arguments: {} }],
      ['prompts/get', { name: 'p' }],
      ['resources/read', { uri: 'x:1' }],
    ] as const) {
      const response = await postRpc(
        gateway.resource,
        { jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: META } },
        { ...headers, 'mcp-method': method },
      )
      assert.equal(response.status, 400, method)
      const body = (await response.json()) as { error: { code: number; message: string } }
      assert.equal(body.error.code, -32020)
      assert.match(body.error.message, /Mcp-Name/)
    }
    assert.equal(called(), 0)
    const named = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: {}, _meta: META } },
      { ...headers, 'mcp-method': 'tools/call', 'mcp-name': 'echo' },
    )
    assert.equal(named.status, 200)
    await named.arrayBuffer()
    assert.equal(called(), 1)
  })

  it('resources/read of an unknown resource: the 2025 code -32002 becomes -32602, the rest as the child wrote it', async () => {
    const response = await postRpc(
      gateway.resource,
      { jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri: 'x:1', _meta: META } },
      { ...headers, 'mcp-method': 'resources/read', 'mcp-name': 'x:1' },
    )
    assert.equal(
      await response.text(),
      '{"jsonrpc":"2.0","id":3,"error":{"code": -32602,"message":"Resource not found","data":{"uri":"x:1"}}}',
    )
  })
})
