import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createGuard, discoverAuthorizationServer, metadataUrls } from '../../src/guard/index.ts'
import { startTestIdp } from '../support/idp.ts'
import { closedOrigin, type ScriptedServer, startScriptedServer } from '../support/jwks-server.ts'

const RESOURCE = 'https://mcp.example.com/mcp'
const quietLogger = { warn: () => {}, info: () => {} }

const AS_WELL_KNOWN = '/.well-known/oauth-authorization-server'
const OIDC_WELL_KNOWN = '/.well-known/openid-configuration'

/** The order MCP 2025-11-25 "Authorization Server Metadata Discovery" prescribes, as paths on the origin. */
function expectedPaths(issuerPath: string): string[] {
  return issuerPath === ''
    ? [AS_WELL_KNOWN, OIDC_WELL_KNOWN]
    : [`${AS_WELL_KNOWN}${issuerPath}`, `${OIDC_WELL_KNOWN}${issuerPath}`, `${issuerPath}${OIDC_WELL_KNOWN}`]
}

const guardFor = (issuer: string) =>
  createGuard({
    resource: RESOURCE,
    authorizationServers: [{ issuer }],
    logger: quietLogger,
    timeoutMs: 2000,
  })

async function rejection(promise: Promise<unknown>): Promise<Error & { code: string }> {
  try {
    await promise
  } catch (error) {
    return error as Error & { code: string }
  }
  assert.fail('expected a rejection')
}

async function withServer(run: (server: ScriptedServer) => Promise<void>): Promise<void> {
  const server = await startScriptedServer()
  try {
    await run(server)
  } finally {
    await server.close()
  }
}

describe('metadataUrls', () => {
  const cases = [
    { issuer: 'https://as.example.com', path: '' },
    { issuer: 'https://as.example.com/', path: '' },
    { issuer: 'https://as.example.com/tenant1', path: '/tenant1' },
    // RFC 8414 §3.1: a terminating slash is removed before the well-known segment is inserted.
    { issuer: 'https://as.example.com/tenant1/', path: '/tenant1' },
    { issuer: 'https://as.example.com:8443/realms/a/b', path: '/realms/a/b' },
  ]
  for (const { issuer, path } of cases) {
    test(issuer, () => {
      const origin = new URL(issuer).origin
      assert.deepEqual(
        metadataUrls(issuer).map((url) => url.href),
        expectedPaths(path).map((p) => `${origin}${p}`),
      )
    })
  }
})

describe('discovery against a real provider', () => {
  for (const path of ['/tenant1', '']) {
    test(`issuer ${path === '' ? 'without a path' : `with path ${path}`}: tries the locations in order`, async (t) => {
      const idp = await startTestIdp({ resources: { [RESOURCE]: 'tools:read' }, path })
      t.after(() => idp.close())
      const requested: string[] = []
      // Ahead of the provider's own listener, which rewrites the URL of requests under the issuer path.
      idp.server.prependListener('request', (req) => requested.push(req.url ?? ''))

      const metadata = await discoverAuthorizationServer(idp.issuer)
      assert.equal(metadata.issuer, idp.issuer)
      assert.equal(metadata.jwks_uri, `${idp.issuer}/jwks`)
      // oidc-provider answers RFC 8414 at the origin and OIDC under the path: with a path, the first two miss.
      const served = path === '' ? AS_WELL_KNOWN : `${path}${OIDC_WELL_KNOWN}`
      const order = expectedPaths(path)
      assert.deepEqual(requested, order.slice(0, order.indexOf(served) + 1))

      const guard = await guardFor(idp.issuer)
      const token = await idp.issueToken()
      const result = await guard.check(
        new Request(RESOURCE, { headers: { authorization: `Bearer ${token}` } }),
      )
      assert.equal(result.ok, true, result.ok ? '' : result.error.message)
    })
  }
})

describe('discovery falls through 404s in order', () => {
  const positions = [
    { path: '', served: 0 },
    { path: '', served: 1 },
    { path: '/tenant1', served: 0 },
    { path: '/tenant1', served: 1 },
    { path: '/tenant1', served: 2 },
  ]
  for (const { path, served } of positions) {
    const paths = expectedPaths(path)
    test(`falls through 404s until ${paths[served]}`, () =>
      withServer(async (server) => {
        const issuer = `${server.origin}${path}`
        server.route(paths[served] as string, { body: { issuer, jwks_uri: `${server.origin}/jwks` } })
        const metadata = await discoverAuthorizationServer(issuer)
        assert.equal(metadata.issuer, issuer)
        assert.deepEqual(server.requests, paths.slice(0, served + 1))
      }))
  }
})

describe('discovery failures', () => {
  const mismatches = [
    { name: 'document adds a trailing slash', configured: '', declared: '/', hint: true },
    { name: 'document drops the trailing slash', configured: '/', declared: '', hint: true },
    { name: 'document names another issuer', configured: '', declared: null, hint: false },
  ]
  for (const m of mismatches) {
    test(`issuer mismatch, ${m.name}: discovery_failed${m.hint ? ' with the trailing-slash hint' : ''}`, () =>
      withServer(async (server) => {
        const issuer = `${server.origin}${m.configured}`
        const declared = m.declared === null ? 'https://other.example.com' : `${server.origin}${m.declared}`
        server.route(AS_WELL_KNOWN, { body: { issuer: declared, jwks_uri: `${server.origin}/jwks` } })
        const error = await rejection(guardFor(issuer))
        assert.equal(error.code, 'discovery_failed')
        assert.ok(error.message.includes(`${server.origin}${AS_WELL_KNOWN}`), error.message)
        assert.ok(error.message.includes(`declares issuer ${JSON.stringify(declared)}`), error.message)
        assert.ok(error.message.includes(`configured issuer is ${JSON.stringify(issuer)}`), error.message)
        assert.equal(error.message.includes('They differ only by a trailing slash'), m.hint, error.message)
        // RFC 8414 §3.3: a mismatching document must not be used, and no other location may stand in for it.
        assert.deepEqual(server.requests, [AS_WELL_KNOWN])
      }))
  }

  for (const path of ['', '/tenant1']) {
    test(`unreachable issuer${path}: discovery_failed naming each URL tried and 'connection refused'`, async () => {
      const issuer = `${await closedOrigin()}${path}`
      const error = await rejection(guardFor(issuer))
      assert.equal(error.code, 'discovery_failed')
      for (const url of metadataUrls(issuer)) {
        assert.ok(error.message.includes(`${url.href}: connection refused`), error.message)
      }
      assert.ok(error.message.includes(`no metadata found for issuer ${issuer}`), error.message)
    })
  }

  test('plain http off loopback: discovery_failed saying https is required', async () => {
    const error = await rejection(guardFor('http://as.example.com'))
    assert.equal(error.code, 'discovery_failed')
    for (const url of metadataUrls('http://as.example.com')) {
      assert.ok(error.message.includes(`metadata URL ${url.href} must use https`), error.message)
    }
  })

  const badDocuments = [
    { name: 'metadata without jwks_uri', extra: {}, message: 'has no jwks_uri' },
    {
      name: 'jwks_uri that is not a string',
      extra: { jwks_uri: ['x'] },
      message: '"jwks_uri" is not a string',
    },
  ]
  for (const doc of badDocuments) {
    test(`${doc.name}: discovery_failed`, () =>
      withServer(async (server) => {
        const issuer = server.origin
        server.route(AS_WELL_KNOWN, { body: { issuer, ...doc.extra } })
        const error = await rejection(guardFor(issuer))
        assert.equal(error.code, 'discovery_failed')
        assert.ok(error.message.includes(doc.message), error.message)
        assert.ok(error.message.includes(issuer), error.message)
      }))
  }

  test('discovered jwks_uri unreachable: authorization_server_unavailable naming the JWKS URL', () =>
    withServer(async (server) => {
      const jwksUri = `${await closedOrigin()}/jwks`
      server.route(AS_WELL_KNOWN, { body: { issuer: server.origin, jwks_uri: jwksUri } })
      const error = await rejection(guardFor(server.origin))
      assert.equal(error.code, 'authorization_server_unavailable')
      assert.ok(
        error.message.includes(`JWKS ${jwksUri} could not be loaded: connection refused`),
        error.message,
      )
    }))

  test('discovered jwks_uri on plain http off loopback: discovery_failed naming it', () =>
    withServer(async (server) => {
      const jwksUri = 'http://keys.example.com/jwks'
      server.route(AS_WELL_KNOWN, { body: { issuer: server.origin, jwks_uri: jwksUri } })
      const error = await rejection(guardFor(server.origin))
      assert.equal(error.code, 'discovery_failed')
      assert.ok(error.message.includes(jwksUri), error.message)
    }))
})
