import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { AuthorizationServerOptions } from '../../src/auth-server/index.ts'
import { createSafeFetch, safeFetch } from '../../src/auth-server/safe_fetch.ts'
import { startDocumentServer } from '../support/cimd.ts'
import { createTestCertificates, type TestCertificates } from '../support/test-ca.ts'
import {
  authorize,
  authorizeUrl,
  browse,
  type Harness,
  pkce,
  randomLoopbackCallback,
  startAuthServer,
  token,
} from './harness.ts'

const clientDocument = (clientId: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    client_id: clientId,
    client_name: 'CIMD e2e client',
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    ...extra,
  })

let certificates: TestCertificates
let documents: Awaited<ReturnType<typeof startDocumentServer>>
let other: Awaited<ReturnType<typeof startDocumentServer>>
before(async () => {
  certificates = createTestCertificates()
  documents = await startDocumentServer(certificates)
  other = await startDocumentServer(certificates)
  documents.documents.set('/ping.json', () => ({ status: 200, body: '{}' }))
  other.documents.set('/ping.json', () => ({ status: 200, body: '{}' }))
})
after(() => Promise.all([documents.close(), other.close()]))

describe('the SSRF guard with the test-only exemption', () => {
  test('an exempted host is fetched over https with the test CA', async () => {
    const fetchExempt = createSafeFetch({ unsafeAllowHosts: [documents.host], ca: certificates.ca })
    const response = await fetchExempt(documents.url('/ping.json'))
    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {})
  })

  for (const [name, url] of [
    ['another loopback port', () => other.url('/ping.json')],
    ['the same server by another name', () => `https://localhost:${documents.host.split(':')[1]}/ping.json`],
  ] as const) {
    test(`${name} is still refused before connecting`, async () => {
      const before = other.hits.get('/ping.json') ?? 0
      const fetchExempt = createSafeFetch({ unsafeAllowHosts: [documents.host], ca: certificates.ca })
      await assert.rejects(fetchExempt(url()), {
        message: 'client metadata document host resolves to a special-use IP address',
      })
      assert.equal(other.hits.get('/ping.json') ?? 0, before)
    })
  }

  test('without the exemption the exempted host is refused too', async () => {
    await assert.rejects(safeFetch(documents.url('/ping.json')), {
      message: 'client metadata document host resolves to a special-use IP address',
    })
  })
})

describe('a CIMD client against the authorization server', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer({
      overrides: {
        cimd: { unsafeAllowHosts: [documents.host], ca: certificates.ca },
        // Every fetch counts as a registration from 127.0.0.1, and failing ones are fetched twice.
        registration: { rateLimit: { limit: 100, windowSeconds: 60 } },
      } as Partial<AuthorizationServerOptions>,
    })
  })
  after(() => h.close())

  const tryClient = (clientId: string, redirectUri = randomLoopbackCallback()) =>
    browse(
      authorizeUrl(h, {
        client_id: clientId,
        response_type: 'code',
        redirect_uri: redirectUri,
        scope: 'mcp:read',
        resource: h.resource,
        code_challenge: pkce().challenge,
        code_challenge_method: 'S256',
      }),
    )

  test('completes authorize and token with its URL as client_id', async () => {
    const clientId = documents.url('/client.json')
    documents.documents.set('/client.json', () => ({ status: 200, body: clientDocument(clientId) }))
    const { code, redirectUri, verifier } = await authorize(h, clientId)
    const { response, body } = await token(h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      resource: h.resource,
    })
    assert.equal(response.status, 200)
    const claims = JSON.parse(
      Buffer.from((body.access_token as string).split('.')[1] as string, 'base64url').toString(),
    )
    assert.equal(claims.client_id, clientId)
    assert.equal(claims.aud, h.resource)
  })

  test("the document's scope is no limit: a later authorization for a wider scope gets it (step-up)", async () => {
    const clientId = documents.url('/narrow.json')
    const body = clientDocument(clientId, { scope: 'mcp:read' })
    documents.documents.set('/narrow.json', () => ({ status: 200, body }))
    const { code, redirectUri, verifier } = await authorize(h, clientId, { scope: 'mcp:read mcp:write' })
    const tokens = await token(h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      resource: h.resource,
    })
    assert.equal(tokens.response.status, 200)
    assert.equal(tokens.body.scope, 'mcp:read mcp:write')
  })

  const refused: [string, string, () => { status: number; body: string }][] = [
    [
      'client_id in the document differs from the URL',
      '/wrong-id.json',
      () => ({ status: 200, body: clientDocument('https://elsewhere.example/client.json') }),
    ],
    [
      'the document is larger than the cap',
      '/big.json',
      () => ({
        status: 200,
        body: clientDocument(documents.url('/big.json'), { padding: 'x'.repeat(6000) }),
      }),
    ],
    ['the document is not JSON', '/not-json.json', () => ({ status: 200, body: '<html>not json</html>' })],
    ['the document is missing (404)', '/missing.json', () => ({ status: 404, body: 'not found' })],
  ]
  for (const [name, path, answer] of refused) {
    test(`refused when ${name}, and the failure is not cached`, async () => {
      documents.documents.set(path, answer)
      for (const attempt of [1, 2]) {
        const response = await tryClient(documents.url(path))
        assert.equal(response.status, 400)
        assert.equal(response.headers.get('location'), null)
        assert.match(await response.text(), /invalid_client/)
        // oidc-provider looks a failing client up twice per authorization request; nothing is cached, so
        // the second request fetches again.
        assert.equal(documents.hits.get(path), 2 * attempt)
      }
    })
  }

  test('a document asking for client_credentials yields no client and no token (machine clients are declared)', async () => {
    const clientId = documents.url('/self-acting.json')
    documents.documents.set('/self-acting.json', () => ({
      status: 200,
      body: clientDocument(clientId, {
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      }),
    }))
    const { response, body } = await token(h, {
      grant_type: 'client_credentials',
      client_id: clientId,
      resource: h.resource,
      scope: 'mcp:read mcp:write',
    })
    assert.equal(response.status, 400)
    assert.equal(body.error, 'invalid_client_metadata')
    assert.match(body.error_description as string, /grant_types value "client_credentials"/)
    assert.equal(body.access_token, undefined)
  })

  test('refused when the redirect URI is not listed in the document', async () => {
    const clientId = documents.url('/listed.json')
    documents.documents.set('/listed.json', () => ({ status: 200, body: clientDocument(clientId) }))
    const response = await tryClient(clientId, 'http://127.0.0.1:4444/elsewhere')
    assert.equal(response.status, 400)
    assert.equal(response.headers.get('location'), null)
    assert.match(await response.text(), /invalid_redirect_uri/)
  })
})
