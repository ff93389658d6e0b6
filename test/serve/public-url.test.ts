import assert from 'node:assert/strict'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'

const PUBLIC_URL = 'https://mcp.example.test/mcp'
const ISSUER = 'https://mcp.example.test'

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A GET over plain http with any Host header (fetch would not let a test forge it). */
function get(port: number, path: string, headers: Record<string, string>) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => {
        body += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('gatehouse serve behind a TLS-terminating proxy, without trust_proxy', () => {
  let gateway: Gateway
  let port: number
  before(async () => {
    port = await freePort()
    gateway = await startEmbeddedGateway({
      port: String(port),
      publicUrl: PUBLIC_URL,
      dataDir: await tempDir('public-url'),
    })
  })
  after(() => gateway?.close())

  it('publishes only URLs under the https issuer, whatever Host and X-Forwarded-* the request carries', async () => {
    for (const headers of [
      { host: `127.0.0.1:${port}` },
      { host: 'mcp.example.test' },
      { host: `127.0.0.1:${port}`, 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' },
      { host: 'mcp.example.test', 'x-forwarded-host': 'evil.example:8443', 'x-forwarded-proto': 'http' },
    ] as Record<string, string>[]) {
      const { status, body } = await get(port, '/.well-known/oauth-authorization-server', headers)
      assert.equal(status, 200, body)
      const metadata = JSON.parse(body) as Record<string, unknown>
      assert.equal(metadata.issuer, ISSUER)
      const urls = Object.values(metadata).filter(
        (value): value is string => typeof value === 'string' && /^[a-z]+:\/\//.test(value),
      )
      assert.ok(urls.length >= 8, urls.join(' '))
      for (const url of urls) assert.ok(url === ISSUER || url.startsWith(`${ISSUER}/`), url)
    }
  })

  it('on its loopback bind, answers no other Host at all (DNS rebinding)', async () => {
    const { status, body } = await get(port, '/.well-known/oauth-authorization-server', {
      host: 'evil.example',
    })
    assert.equal(status, 403)
    assert.match(body, /forbidden_host/)
  })
})
