import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  INITIALIZE,
  NODE,
  postRpc,
  startEverythingHttp,
  startIdp,
  startTestGateway,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname
const LIMITS = { limits: { stream_idle_timeout_ms: 100 } }

/** Reads a response body to its end: 'ended' when it finished, 'closed' when the connection was cut. */
async function readToEnd(response: Response): Promise<'ended' | 'closed'> {
  try {
    await response.text()
    return 'ended'
  } catch {
    return 'closed'
  }
}

describe('gateway: GET streams that carry nothing are closed after limits.stream_idle_timeout_ms', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startEverythingHttp>>
  const gateways = {} as Record<'stdio' | 'http', Gateway>
  let token: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startEverythingHttp()])
    ;[gateways.stdio, gateways.http] = await Promise.all([
      startTestGateway(idp, { command: [NODE, FRAGILE_CHILD] }, LIMITS),
      startTestGateway(idp, { upstream: upstream.url }, LIMITS),
    ])
    token = await idp.issueToken({ scope: 'mcp' })
  })

  after(async () => {
    await Promise.all([gateways.stdio?.close(), gateways.http?.close()])
    await upstream?.close()
    await idp?.close()
  })

  // Both bridges end the stream as a stream ends: no reset (the HTTP proxy used to cut the connection).
  for (const kind of ['stdio', 'http'] as const) {
    it(`${kind}: the idle GET stream ends, and the session goes on`, { timeout: 10_000 }, async () => {
      const gateway = gateways[kind]
      const headers = { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-06-18' }
      const initialized = await postRpc(gateway.resource, INITIALIZE, headers)
      assert.equal(initialized.status, 200)
      await initialized.text()
      const session = { ...headers, 'mcp-session-id': initialized.headers.get('mcp-session-id') as string }
      await postRpc(gateway.resource, { jsonrpc: '2.0', method: 'notifications/initialized' }, session)
      const stream = await fetch(gateway.resource, {
        headers: { ...session, accept: 'text/event-stream' },
      })
      assert.equal(stream.status, 200)
      assert.equal(stream.headers.get('content-type'), 'text/event-stream')
      assert.equal(await readToEnd(stream), 'ended')
      const list = await postRpc(gateway.resource, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, session)
      assert.equal(list.status, 200)
      await list.body?.cancel()
    })
  }
})
