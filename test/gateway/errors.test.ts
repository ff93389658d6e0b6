import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { GATEWAY_ERRORS, GatewayError, type GatewayErrorCode } from '../../src/gateway/errors.ts'

// test/errors.test.ts keeps the registry and docs/errors.md ("Gateway") in step; these are the gateway's own fields.

const codes = Object.keys(GATEWAY_ERRORS) as GatewayErrorCode[]

describe('GatewayError reads the registry; the detail never reaches the public text', () => {
  for (const code of codes) {
    it(code, () => {
      const error = new GatewayError(code, { detail: 'the detail' })
      const entry = GATEWAY_ERRORS[code]
      assert.deepEqual(
        [error.status, error.rpcCode, error.publicText, error.detail],
        [entry.status, entry.rpc, entry.description, 'the detail'],
      )
    })
  }

  it('a reason about the client’s own request replaces the description on the wire', () => {
    const error = new GatewayError('body_too_large', { reason: 'the request body exceeds 10 bytes' })
    assert.equal(error.publicText, 'the request body exceeds 10 bytes')
  })

  it('the JSON-RPC codes MCP clients see are the ones they saw before the registry', () => {
    // The MCP SDK's client recognises a lost session by the 404; its server words it the same way.
    assert.deepEqual(GATEWAY_ERRORS.session_not_found, {
      status: 404,
      rpc: -32_000,
      description: 'Session not found',
    })
  })
})
