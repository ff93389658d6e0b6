import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { createGuard, discoverAuthorizationServer } from '../../src/guard/index.ts'

const quietLogger = { warn: () => {}, info: () => {} }
const CHUNK = Buffer.alloc(64 * 1024, 'a')

/**
 * A provider whose metadata or JWKS never ends: `/endless/...` streams chunks until the client hangs up
 * (counting what it sent), `/declared/...` announces 50 MB. `/ok` serves metadata pointing at `jwks`.
 */
async function startHostileProvider() {
  const sent: Record<string, number> = {}
  const stream = (res: ServerResponse, path: string) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"keys":["')
    sent[path] = 0
    const write = () => {
      sent[path] = (sent[path] ?? 0) + CHUNK.length
      return res.write(CHUNK)
    }
    const more = () => {
      while (!res.destroyed && write()) {}
      if (!res.destroyed) res.once('drain', more)
    }
    more()
  }
  let jwks = ''
  const server = createServer((req, res) => {
    const path = req.url ?? '/'
    if (path.includes('/endless')) return stream(res, path)
    if (path.startsWith('/declared')) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(50_000_000) })
      res.write(CHUNK)
      return
    }
    if (path === '/.well-known/oauth-authorization-server/ok') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ issuer: `${origin}/ok`, jwks_uri: jwks }))
      return
    }
    res.writeHead(404).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    origin,
    sent,
    pointJwksAt: (url: string) => {
      jwks = url
    },
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

describe('guard fetches: body-size caps against a hostile provider', () => {
  let provider: Awaited<ReturnType<typeof startHostileProvider>>
  before(async () => {
    provider = await startHostileProvider()
  })
  after(() => provider?.close())

  test('endless discovery metadata: discovery_failed naming the URL and the 256 KiB cap, long before the timeout', async () => {
    const issuer = `${provider.origin}/endless`
    const started = performance.now()
    await assert.rejects(discoverAuthorizationServer(issuer, { timeoutMs: 30_000 }), (error: Error) => {
      assert.match(error.message, /discovery failed/)
      assert.ok(
        error.message.includes(
          `${provider.origin}/.well-known/oauth-authorization-server/endless: answered with more than 262144 bytes`,
        ),
        error.message,
      )
      return true
    })
    assert.ok(performance.now() - started < 10_000)
    // The read stopped at the cap: what was sent is the cap plus what the sockets buffered, not the stream.
    for (const bytes of Object.values(provider.sent)) assert.ok(bytes < 8 * 1024 * 1024, String(bytes))
  })

  test('endless JWKS: the guard refuses to start with authorization_server_unavailable naming the JWKS URL and the 512 KiB cap', async () => {
    const jwksUri = `${provider.origin}/endless/jwks`
    provider.pointJwksAt(jwksUri)
    await assert.rejects(
      createGuard({
        resource: 'https://mcp.example.com/mcp',
        authorizationServers: [{ issuer: `${provider.origin}/ok` }],
        logger: quietLogger,
        timeoutMs: 30_000,
      }),
      (error: Error & { code: string }) => {
        assert.equal(error.code, 'authorization_server_unavailable')
        assert.ok(error.message.includes(`JWKS ${jwksUri}`), error.message)
        assert.ok(error.message.includes('answered with more than 524288 bytes'), error.message)
        return true
      },
    )
    assert.ok((provider.sent['/endless/jwks'] ?? 0) < 8 * 1024 * 1024)
  })

  test('a JWKS declaring 50 MB is refused before reading it', async () => {
    const jwksUri = `${provider.origin}/declared/jwks`
    provider.pointJwksAt(jwksUri)
    await assert.rejects(
      createGuard({
        resource: 'https://mcp.example.com/mcp',
        authorizationServers: [{ issuer: `${provider.origin}/ok` }],
        logger: quietLogger,
      }),
      (error: Error) => {
        assert.ok(error.message.includes(`JWKS ${jwksUri}`), error.message)
        assert.ok(
          error.message.includes('answered with 50000000 bytes, over the 524288-byte limit'),
          error.message,
        )
        return true
      },
    )
  })
})
