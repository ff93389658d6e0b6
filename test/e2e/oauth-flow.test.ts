import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { decodeJwt } from 'jose'
import type { Browser } from 'playwright-core'
import { createLocalUser } from '../../src/auth-server/interactions/index.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import { launchBrowser, withContext } from '../support/browser.ts'
import { startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { startClientCallback } from '../support/login-flow.ts'
import { InMemoryOAuthProvider } from '../support/oauth-client-provider.ts'
import { type Exchange, recordingFetch } from '../support/recording-fetch.ts'

const PASSWORD = 'correct horse battery staple'
const INSPECTOR = fileURLToPath(new URL('../../node_modules/.bin/mcp-inspector', import.meta.url))

describe('the MCP SDK v1 client through the whole OAuth flow against gatehouse serve (embedded authorization server)', () => {
  let browser: Browser
  let gateway: Gateway
  let issuer: string
  let userId: string
  /** An access token the first test obtained through the flow, for the other clients. */
  let flowAccessToken: string | undefined

  before(async () => {
    browser = await launchBrowser()
    // Not --dev: the real sign-in and consent pages, a local account, SQLite in a temporary data directory.
    gateway = await startEmbeddedGateway({ dataDir: await tempDir('e2e-data') })
    issuer = new URL(gateway.resource).origin
    const store = gateway.authorizationServer?.store
    assert.ok(store)
    userId = (await createLocalUser(store, 'alice', PASSWORD)).id
  })
  after(async () => {
    await gateway?.close()
    await browser?.close()
  })

  /** The user's part in Chromium: sign in as alice, approve, and wait for the redirect to the client. */
  const signInAndApprove =
    (callback: Awaited<ReturnType<typeof startClientCallback>>) =>
    (url: URL): Promise<URL> =>
      withContext(browser, async (context) => {
        const page = await context.newPage()
        const arrival = callback.next()
        await page.goto(url.href)
        await page.getByLabel('Username').fill('alice')
        await page.getByLabel('Password').fill(PASSWORD)
        await page.getByRole('button', { name: 'Sign in' }).click()
        await page.getByRole('heading', { name: 'Allow access?' }).waitFor()
        assert.equal(await page.locator('.resource').textContent(), gateway.resource)
        await page.getByRole('button', { name: 'Approve' }).click()
        await page.locator('#done').waitFor()
        return arrival
      })

  async function connect(provider: InMemoryOAuthProvider, exchanges: Exchange[] = []) {
    const transport = new StreamableHTTPClientTransport(new URL(gateway.resource), {
      authProvider: provider,
      fetch: recordingFetch(exchanges),
    })
    const client = new Client({ name: 'gatehouse-e2e', version: '1.0.0' })
    await client.connect(transport)
    return { client, transport }
  }

  const refreshAtTokenEndpoint = (refreshToken: string, clientId: string) =>
    fetch(`${issuer}/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: refreshToken,
        client_id: clientId,
      }),
    })

  test('401, PRM, metadata, DCR, Chromium sign-in and consent, token, tools, refresh, revocation', async () => {
    const callback = await startClientCallback()
    try {
      const provider = new InMemoryOAuthProvider({
        redirectUrl: callback.redirectUri,
        authorize: signInAndApprove(callback),
      })
      const exchanges: Exchange[] = []
      await assert.rejects(connect(provider, exchanges), UnauthorizedError)
      assert.deepEqual(exchanges.slice(0, 4), [
        { method: 'POST', url: gateway.resource, status: 401 },
        { method: 'GET', url: `${issuer}/.well-known/oauth-protected-resource/mcp`, status: 200 },
        { method: 'GET', url: `${issuer}/.well-known/oauth-authorization-server`, status: 200 },
        { method: 'POST', url: `${issuer}/register`, status: 201 },
      ])

      const sent = provider.authorizationUrl as URL
      assert.equal(sent.origin + sent.pathname, `${issuer}/authorize`)
      assert.equal(sent.searchParams.get('resource'), gateway.resource)
      assert.equal(sent.searchParams.get('code_challenge_method'), 'S256')
      assert.equal(sent.searchParams.get('scope'), 'mcp')
      const arrived = await (provider.callback as Promise<URL>)
      assert.equal(arrived.searchParams.get('state'), provider.sentState)
      assert.equal(arrived.searchParams.get('iss'), issuer)
      const code = arrived.searchParams.get('code')
      assert.ok(code)

      const transport = new StreamableHTTPClientTransport(new URL(gateway.resource), {
        authProvider: provider,
      })
      await transport.finishAuth(code)
      await transport.close()
      const tokens = provider.tokens()
      assert.ok(tokens?.access_token && tokens.refresh_token)
      const claims = decodeJwt(tokens.access_token)
      assert.equal(claims.aud, gateway.resource)
      assert.equal(claims.iss, issuer)
      assert.equal(claims.sub, userId)

      flowAccessToken = tokens.access_token
      const { client } = await connect(provider)
      const { tools } = await client.listTools()
      assert.ok(tools.some((tool) => tool.name === 'echo'))
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'through the whole flow' } })
      assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: through the whole flow' }])
      await client.close()

      // An access token the gateway refuses: the SDK refreshes on the 401, unattended, and gets a new refresh token.
      const clientId = (provider.clientInformation() as { client_id: string }).client_id
      const firstRefresh = tokens.refresh_token
      provider.saveTokens({ ...tokens, access_token: 'expired' })
      const refreshed = await connect(provider)
      assert.ok((await refreshed.client.listTools()).tools.length > 0)
      await refreshed.client.close()
      const rotated = provider.tokens()?.refresh_token as string
      assert.notEqual(rotated, firstRefresh)
      assert.notEqual(provider.tokens()?.access_token, 'expired')

      const revoke = await fetch(`${issuer}/revoke`, {
        method: 'POST',
        body: new URLSearchParams({ token: rotated, token_type_hint: 'refresh_token', client_id: clientId }),
      })
      assert.equal(revoke.status, 200)
      const afterRevocation = await refreshAtTokenEndpoint(rotated, clientId)
      assert.equal(afterRevocation.status, 400)
      assert.equal(((await afterRevocation.json()) as { error: string }).error, 'invalid_grant')
    } finally {
      await callback.close()
    }
  })

  test('the Inspector CLI lists the tools with the access token from the flow', async () => {
    assert.ok(flowAccessToken, 'the flow test must run first')
    const child = spawn(
      process.execPath,
      [
        INSPECTOR,
        '--cli',
        gateway.resource,
        '--transport',
        'http',
        '--method',
        'tools/list',
        '--header',
        `Authorization: Bearer ${flowAccessToken}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
    })
    const [status] = await once(child, 'exit')
    assert.equal(status, 0)
    const { tools } = JSON.parse(stdout) as { tools: { name: string }[] }
    assert.ok(tools.some((tool) => tool.name === 'echo'))
  })
})
