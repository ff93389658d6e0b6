import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { NODE, startIdp, startTestGateway } from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const readyz = async (gateway: Gateway) => {
  const response = await fetch(new URL('/readyz', gateway.resource))
  return { status: response.status, body: await response.json() }
}

const READY = { status: 200, body: { status: 'ready' } }
const NOT_READY = { status: 503, body: { status: 'not ready' } }

describe('gateway: /readyz says whether the upstream can serve', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  const gateways: Gateway[] = []
  const start = async (
    ...args: Parameters<typeof startTestGateway> extends [unknown, ...infer R] ? R : never
  ) => {
    const gateway = await startTestGateway(idp, ...args)
    gateways.push(gateway)
    return gateway
  }

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
  })

  after(async () => {
    await Promise.all(gateways.map((g) => g.close()))
    await upstream?.close()
    await idp?.close()
  })

  it('stdio: ready when the command is an executable file', async () => {
    assert.deepEqual(await readyz(await start({ command: [NODE, '--version'] })), READY)
  })

  it('stdio: ready when the command is found on the PATH', async () => {
    assert.deepEqual(await readyz(await start({ command: ['node', '--version'] })), READY)
  })

  it('stdio: not ready when the command does not exist or is not executable', async () => {
    assert.deepEqual(await readyz(await start({ command: ['/nonexistent/mcp-server'] })), NOT_READY)
    assert.deepEqual(await readyz(await start({ command: ['gatehouse-no-such-command-on-path'] })), NOT_READY)
    assert.deepEqual(await readyz(await start({ command: [new URL(import.meta.url).pathname] })), NOT_READY)
  })

  it('http: ready when the upstream answers, not ready when nothing listens', async () => {
    assert.deepEqual(await readyz(await start({ upstream: upstream.url('record') })), READY)
    // Port 9 (discard) on loopback: nothing listens there.
    assert.deepEqual(await readyz(await start({ upstream: 'http://127.0.0.1:9/mcp' })), NOT_READY)
  })

  it('http: asks the upstream at most once a second, however often it is probed', async () => {
    const gateway = await start({ upstream: upstream.url('record') })
    upstream.received.length = 0
    const answers = await Promise.all(Array.from({ length: 20 }, () => readyz(gateway)))
    assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]))
    assert.equal(upstream.received.filter((r) => r.method === 'OPTIONS').length, 1)
  })
})
