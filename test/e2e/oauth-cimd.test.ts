import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { decodeJwt } from 'jose'
import type { Browser } from 'playwright-core'
import { createLocalUser } from '../../src/auth-server/interactions/index.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import { launchBrowser, withContext } from '../support/browser.ts'
import { startDocumentServer, startEmbeddedGatewayTrustingDocuments } from '../support/cimd.ts'
import { tempDir } from '../support/embedded-gateway.ts'
import { startClientCallback } from '../support/login-flow.ts'
import { InMemoryOAuthProvider } from '../support/oauth-client-provider.ts'
import { type Exchange, recordingFetch } from '../support/recording-fetch.ts'
import { createTestCertificates } from '../support/test-ca.ts'

const PASSWORD = 'correct horse battery staple'
const DOCUMENT_PATH = '/mcp-client.json'

describe('the MCP SDK v1 client through the OAuth flow against gatehouse serve with a Client ID Metadata Document', () => {
  let browser: Browser
  let documents: Awaited<ReturnType<typeof startDocumentServer>>
  let gateway: Gateway
  let issuer: string
  let userId: string

  before(async () => {
    const certificates = createTestCertificates()
    documents = await startDocumentServer(certificates)
    browser = await launchBrowser()
    gateway = await startEmbeddedGatewayTrustingDocuments(
      { dataDir: await tempDir('e2e-cimd-data') },
      documents.host,
      certificates.ca,
    )
    issuer = new URL(gateway.resource).origin
    const store = gateway.authorizationServer?.store
    assert.ok(store)
    userId = (await createLocalUser(store, 'alice', PASSWORD)).id
  })
  after(async () => {
    await gateway?.close()
    await browser?.close()
    await documents?.close()
  })

  test('no registration: the client_id is the document URL, shown on consent and carried by the token', async () => {
    const callback = await startClientCallback()
    try {
      const clientId = documents.url(DOCUMENT_PATH)
      let consent: { clientHost: string | null; warning: boolean } | undefined
      const provider = new InMemoryOAuthProvider({
        redirectUrl: callback.redirectUri,
        clientMetadataUrl: clientId,
        authorize: (url) =>
          withContext(browser, async (context) => {
            const page = await context.newPage()
            const arrival = callback.next()
            await page.goto(url.href)
            await page.getByLabel('Username').fill('alice')
            await page.getByLabel('Password').fill(PASSWORD)
            await page.getByRole('button', { name: 'Sign in' }).click()
            await page.getByRole('heading', { name: 'Allow access?' }).waitFor()
            consent = {
              clientHost: await page.locator('.client-host').textContent(),
              warning: await page.locator('#localhost-warning').isVisible(),
            }
            await page.getByRole('button', { name: 'Approve' }).click()
            await page.locator('#done').waitFor()
            return arrival
          }),
      })
      // What the SDK client says about itself, published at its client_id.
      documents.documents.set(DOCUMENT_PATH, { client_id: clientId, ...provider.clientMetadata })

      const exchanges: Exchange[] = []
      await assert.rejects(
        client(provider, exchanges).then(({ client }) => client.close()),
        UnauthorizedError,
      )
      // Straight from the metadata to the browser: no POST /register.
      assert.deepEqual(exchanges, [
        { method: 'POST', url: gateway.resource, status: 401 },
        { method: 'GET', url: `${issuer}/.well-known/oauth-protected-resource/mcp`, status: 200 },
        { method: 'GET', url: `${issuer}/.well-known/oauth-authorization-server`, status: 200 },
      ])
      const sent = provider.authorizationUrl as URL
      assert.equal(sent.origin + sent.pathname, `${issuer}/authorize`)
      assert.equal(sent.searchParams.get('client_id'), clientId)
      assert.equal(sent.searchParams.get('resource'), gateway.resource)

      const arrived = await (provider.callback as Promise<URL>)
      assert.ok((documents.hits.get(DOCUMENT_PATH) ?? 0) > 0, 'the authorization server fetched the document')
      assert.deepEqual(consent, { clientHost: documents.host, warning: true })
      assert.equal(arrived.searchParams.get('state'), provider.sentState)
      assert.equal(arrived.searchParams.get('iss'), issuer)
      const code = arrived.searchParams.get('code')
      assert.ok(code)

      const finishing = new StreamableHTTPClientTransport(new URL(gateway.resource), {
        authProvider: provider,
        fetch: recordingFetch(exchanges),
      })
      await finishing.finishAuth(code)
      await finishing.close()
      const tokens = provider.tokens()
      assert.ok(tokens?.access_token)
      const claims = decodeJwt(tokens.access_token)
      assert.equal(claims.client_id, clientId)
      assert.equal(claims.aud, gateway.resource)
      assert.equal(claims.iss, issuer)
      assert.equal(claims.sub, userId)

      const connected = await client(provider, exchanges)
      const echo = await connected.client.callTool({
        name: 'echo',
        arguments: { message: 'by metadata document' },
      })
      assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: by metadata document' }])
      await connected.client.close()
      assert.equal(exchanges.filter((exchange) => exchange.url === `${issuer}/register`).length, 0)
    } finally {
      await callback.close()
    }
  })

  async function client(provider: InMemoryOAuthProvider, exchanges: Exchange[]) {
    const transport = new StreamableHTTPClientTransport(new URL(gateway.resource), {
      authProvider: provider,
      fetch: recordingFetch(exchanges),
    })
    const client = new Client({ name: 'gatehouse-e2e-cimd', version: '1.0.0' })
    await client.connect(transport)
    return { client, transport }
  }
})
