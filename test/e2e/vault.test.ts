import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { stringify } from 'yaml'
import { listGrants, parseVaultKeys, TokenVault } from '../../src/auth-server/index.ts'
import { createLocalUser } from '../../src/auth-server/interactions/index.ts'
import { vaultMode } from '../../src/gateway/credentials/vault.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import type { Store } from '../../src/storage/store.ts'
import { registerPublicClient, token } from '../auth-server/harness.ts'
import { launchBrowser } from '../support/browser.ts'
import { asHarness, gatehouse, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { postRpc } from '../support/gateway-harness.ts'
import { authorizationRequest, startClientCallback } from '../support/login-flow.ts'
import {
  type ApiCall,
  startThirdParty,
  startThirdPartyApi,
  THIRD_PARTY_ACCOUNT,
  type ThirdParty,
  VAULT_CLIENT,
} from '../support/vault-provider.ts'

const PASSWORD = 'correct horse battery staple'
const key = () => randomBytes(32).toString('base64')
const KEYS = `k2:${key()}`
/** The key the rotation test puts in front. */
const NEWER = `k3:${key()}`
const silent = { warn() {}, info() {} }

describe('token vault: connect a third-party account in Chromium, the gateway injects its token (mode vault)', () => {
  let browser: Browser
  let context: BrowserContext
  let page: Page
  let third: ThirdParty
  let api: Awaited<ReturnType<typeof startThirdPartyApi>>
  let gateway: Gateway
  let store: Store
  let dataDir: string
  let userId: string
  let mcpToken: string
  let connectUrl: string

  before(async () => {
    browser = await launchBrowser()
    context = await browser.newContext()
    page = await context.newPage()
    third = await startThirdParty()
    api = await startThirdPartyApi(third)
    dataDir = await tempDir('vault-data')
    gateway = await startEmbeddedGateway(
      { dataDir, command: [] },
      {
        upstream: api.url,
        upstream_credentials: { mode: 'vault', connection: 'acme' },
        authorization_server: {
          vault: {
            keys: KEYS,
            connections: [
              {
                id: 'acme',
                name: 'Acme',
                issuer: third.issuer,
                client_id: VAULT_CLIENT.id,
                client_secret: VAULT_CLIENT.secret,
                scopes: ['repo'],
              },
            ],
          },
        },
      },
    )
    const origin = new URL(gateway.resource).origin
    connectUrl = `${origin}/interaction/connect/acme`
    third.start(`${origin}/interaction/connected/acme`)
    store = gateway.authorizationServer?.store as Store
    userId = (await createLocalUser(store, 'alice', PASSWORD)).id
    mcpToken = await signInForMcpToken()
  })
  after(async () => {
    await gateway?.close()
    await api?.close()
    await third?.close()
    await browser?.close()
  })

  /** The MCP client's OAuth flow, alice signing in and approving in Chromium (whose session the vault pages use). */
  async function signInForMcpToken(): Promise<string> {
    const h = asHarness(gateway)
    const callback = await startClientCallback()
    try {
      const clientId = await registerPublicClient(h, { redirect_uris: [callback.redirectUri], scope: 'mcp' })
      const request = authorizationRequest(h, clientId, callback.redirectUri, 'mcp')
      const arrival = callback.next()
      await page.goto(request.url)
      await page.getByLabel('Username').fill('alice')
      await page.getByLabel('Password').fill(PASSWORD)
      await page.getByRole('button', { name: 'Sign in' }).click()
      await page.getByRole('button', { name: 'Approve' }).click()
      const code = (await arrival).searchParams.get('code') as string
      const { body } = await token(h, {
        grant_type: 'authorization_code',
        code,
        redirect_uri: callback.redirectUri,
        code_verifier: request.pkce.verifier,
        client_id: clientId,
        resource: gateway.resource,
      })
      return body.access_token as string
    } finally {
      await callback.close()
    }
  }

  async function mcpClient(capabilities: Record<string, unknown> = {}) {
    const client = new Client({ name: 'vault-test', version: '1.0.0' }, { capabilities })
    await client.connect(
      new StreamableHTTPClientTransport(new URL(gateway.resource), {
        requestInit: { headers: { authorization: `Bearer ${mcpToken}` } },
      }),
    )
    return client
  }

  const toolCalls = () => api.calls.filter((call) => call.method === 'tools/call')
  const textOf = (result: Awaited<ReturnType<Client['callTool']>>) =>
    (result.content as { type: string; text: string }[])[0]?.text ?? ''
  const whoami = async (client: Client) => JSON.parse(textOf(await client.callTool({ name: 'whoami' })))
  const row = () => store.connections.find(userId, 'acme')

  /** Another Gatehouse instance's vault on the same store, with these keys. */
  const anotherInstance = (keys: string) =>
    new TokenVault(
      store,
      silent,
      { issuer: new URL(gateway.resource).origin, interactionPath: '/interaction/' },
      {
        keys: parseVaultKeys(keys, 'test'),
        connections: [
          {
            id: 'acme',
            name: 'Acme',
            issuer: third.issuer,
            clientId: VAULT_CLIENT.id,
            clientSecret: VAULT_CLIENT.secret,
            scopes: ['repo'],
          },
        ],
      },
    )

  /** The access token expires now: the next use refreshes it. */
  async function expire() {
    const current = await row()
    assert.ok(current)
    assert.ok(await store.connections.update(userId, 'acme', current.version, { expiresAt: 1 }))
  }

  async function connectInBrowser(button = 'Connect Acme') {
    await page.goto(connectUrl)
    await page.getByRole('button', { name: button }).click()
    await page.getByRole('heading', { name: 'Connected accounts' }).waitFor()
    assert.equal(await page.locator('[data-connection="acme"] .state').textContent(), 'Connected')
  }

  test('not connected: initialize and tools/list reach the API without a token; a tool call is answered with the connect URL and never reaches it', async () => {
    const client = await mcpClient()
    try {
      assert.deepEqual(
        (await client.listTools()).tools.map((tool) => tool.name),
        ['whoami'],
      )
      const result = await client.callTool({ name: 'whoami' })
      assert.equal(result.isError, true)
      assert.equal(
        textOf(result),
        `Connect your Acme account to use this tool: open ${connectUrl}, then try again.`,
      )
    } finally {
      await client.close()
    }
    assert.deepEqual(toolCalls(), [])
    assert.ok(api.calls.length > 0)
    for (const call of api.calls)
      assert.equal(call.authorization, undefined, `${call.method} got no credentials`)
  })

  test('a client that declared URL-mode elicitation (2025-11-25) gets -32042 with the connect URL', async () => {
    const client = await mcpClient({ elicitation: { url: {} } })
    try {
      const refusal = await client.callTool({ name: 'whoami' }).then(
        () => assert.fail('the call must be refused'),
        (error: unknown) => error,
      )
      assert.ok(refusal instanceof McpError)
      assert.equal(refusal.code, ErrorCode.UrlElicitationRequired)
      const [elicitation] = (refusal.data as { elicitations: Record<string, string>[] }).elicitations
      assert.equal(elicitation?.mode, 'url')
      assert.equal(elicitation?.url, connectUrl)
      assert.ok(elicitation?.elicitationId)
    } finally {
      await client.close()
    }
    assert.deepEqual(toolCalls(), [])
  })

  test('the vault pages refuse a browser without a session, a foreign state and a form without its CSRF token', async () => {
    const origin = new URL(gateway.resource).origin
    const anonymous = await fetch(`${origin}/interaction/connections`)
    assert.equal(anonymous.status, 401)
    assert.match(await anonymous.text(), /Sign in first/)
    const forged = await fetch(`${origin}/interaction/connected/acme?code=stolen&state=forged`)
    assert.equal(forged.status, 400)
    assert.match(await forged.text(), /connect_state_invalid/)
    const cookies = (await context.cookies(origin)).map((c) => `${c.name}=${c.value}`).join('; ')
    const noCsrf = await fetch(`${origin}/interaction/connect/acme/start`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: cookies, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'csrf=wrong',
    })
    assert.equal(noCsrf.status, 403)
    assert.equal(await row(), undefined)
  })

  test('connect in Chromium (PKCE and state at the provider), then the API gets the vault token, never the MCP token', async () => {
    await connectInBrowser()
    const client = await mcpClient()
    try {
      assert.deepEqual(await whoami(client), {
        active: true,
        sub: THIRD_PARTY_ACCOUNT,
        client_id: VAULT_CLIENT.id,
        scope: 'repo',
      })
    } finally {
      await client.close()
    }
    const [call] = toolCalls() as [ApiCall]
    assert.match(call.authorization ?? '', /^Bearer .+/)
    assert.ok(api.calls.every((c) => c.authorization !== `Bearer ${mcpToken}`))
  })

  test('the stored row is ciphertext: neither token appears in the database', async () => {
    const accessToken = (toolCalls().at(-1)?.authorization ?? '').slice('Bearer '.length)
    assert.ok(accessToken)
    const db = new DatabaseSync(join(dataDir, 'gatehouse.db'), { readOnly: true })
    try {
      const rows = db.prepare('SELECT * FROM vault_connections').all() as Record<string, unknown>[]
      assert.equal(rows.length, 1)
      const stored = JSON.stringify(rows)
      assert.equal(rows[0]?.key_id, 'k2')
      assert.match(String(rows[0]?.sealed), /^v1\.[\w-]+\.[\w-]+\.[\w-]+$/)
      assert.ok(!stored.includes(accessToken))
      assert.ok(!/accessToken|refreshToken/.test(stored))
    } finally {
      db.close()
    }
  })

  test('concurrent tool calls and a second instance during a refresh: exactly one refresh reaches the provider, the rotated refresh token is kept', async () => {
    const client = await mcpClient()
    try {
      await expire()
      const before = third.counts.refreshes
      // The provider answers slowly: every caller, of both instances, arrives while the first refresh is under way.
      third.delayMs = 300
      const other = anotherInstance(KEYS)
      const fromOther = Promise.all(Array.from({ length: 4 }, () => other.header(userId, 'acme')))
      const answers = await Promise.all(Array.from({ length: 6 }, () => whoami(client)))
      third.delayMs = 0
      assert.equal(third.counts.refreshes, before + 1)
      for (const answer of answers) assert.equal(answer.active, true)
      const headers = new Set(
        (await fromOther).map((answer) => (answer.ok ? answer.header.value : 'refused')),
      )
      assert.deepEqual([...headers], [toolCalls().at(-1)?.authorization])
      // The provider rotated the refresh token: the stored one is the new one, or this refresh would fail.
      await expire()
      assert.equal((await whoami(client)).active, true)
      assert.equal(third.counts.refreshes, before + 2)
      assert.equal(third.counts.invalidGrants, 0)
    } finally {
      third.delayMs = 0
      await client.close()
    }
  })

  test('provider down while the token has expired: 503 with Retry-After; then refused at once, the provider not asked, until a pause (1 s doubling) ends; a success ends the pauses', async () => {
    // Connected first: an MCP client's initialize, too, refreshes an expired token.
    const client = await mcpClient()
    await expire()
    const calls = toolCalls().length
    /** A tools/call answered vault_unavailable (503); its Retry-After in seconds. */
    const refused = async () => {
      const response = await postRpc(
        gateway.resource,
        { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'whoami' } },
        { authorization: `Bearer ${mcpToken}`, 'mcp-protocol-version': '2025-11-25' },
      )
      assert.equal(response.status, 503)
      const body = (await response.json()) as { error: { code: number; message: string } }
      assert.equal(body.error.code, -32603)
      assert.match(body.error.message, /could not be obtained/)
      return Number(response.headers.get('retry-after'))
    }
    /** One call whose refresh reaches the provider (down): refused, with the pause it started. */
    const triedAndRefused = async () => {
      const requests = third.counts.tokenRequests
      const retryAfter = await refused()
      assert.equal(third.counts.tokenRequests, requests + 1)
      return retryAfter
    }
    /** Calls within a pause of `pause` seconds: refused, and the provider sees none of them. */
    const refusedWithinPause = async (pause: number) => {
      const requests = third.counts.tokenRequests
      for (const retryAfter of await Promise.all([refused(), refused(), refused()]))
        assert.ok(retryAfter >= 1 && retryAfter <= pause, `Retry-After ${retryAfter} within ${pause} s`)
      assert.equal(third.counts.tokenRequests, requests)
    }
    third.down = true
    try {
      assert.equal(await triedAndRefused(), 1)
      await sleep(1000)
      // The pause is over: one try goes, fails, and the next pause is twice as long.
      assert.equal(await triedAndRefused(), 2)
      // Back up, but the pause is not over: not asked. One batch, so that it ends well within the 2 s.
      third.down = false
      await refusedWithinPause(2)
      await sleep(2000)
      assert.equal(toolCalls().length, calls)
      assert.equal((await row())?.status, 'active')
      const refreshes = third.counts.refreshes
      assert.equal((await whoami(client)).active, true)
      assert.equal(third.counts.refreshes, refreshes + 1)
      // The success ended the pauses: the next failure pauses for 1 s again, not 4.
      await expire()
      third.down = true
      assert.equal(await triedAndRefused(), 1)
      third.down = false
      await sleep(1000)
      assert.equal((await whoami(client)).active, true)
    } finally {
      third.down = false
      await client.close()
    }
  })

  test('invalid_grant marks the connection broken: the client gets the reconnect URL, the provider is not asked again; reconnecting in Chromium repairs it', async () => {
    await third.revokeEverything()
    await expire()
    const calls = toolCalls().length
    const refreshes = third.counts.refreshes
    const client = await mcpClient()
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const result = await client.callTool({ name: 'whoami' })
        assert.equal(result.isError, true)
        assert.equal(
          textOf(result),
          `Reconnect your Acme account to use this tool: open ${connectUrl}, then try again.`,
        )
      }
      assert.equal(third.counts.invalidGrants, 1)
      assert.equal(third.counts.refreshes, refreshes)
      assert.equal(toolCalls().length, calls)
      assert.equal((await row())?.status, 'broken')
      await page.goto(`${new URL(gateway.resource).origin}/interaction/connections`)
      assert.equal(await page.locator('[data-connection="acme"] .state').textContent(), 'Needs reconnecting')
      await connectInBrowser()
      assert.equal((await whoami(client)).active, true)
    } finally {
      await client.close()
    }
  })

  test('disconnect on the connections page revokes the tokens at the provider and forgets them', async () => {
    const accessToken = (toolCalls().at(-1)?.authorization ?? '').slice('Bearer '.length)
    assert.equal((await third.introspect(accessToken)).active, true)
    const revocations = third.counts.revocations
    await page.goto(`${new URL(gateway.resource).origin}/interaction/connections`)
    await page.getByRole('button', { name: 'Disconnect' }).click()
    await page.getByRole('heading', { name: 'Connected accounts' }).waitFor()
    assert.equal(await page.locator('[data-connection="acme"] .state').textContent(), 'Not connected')
    assert.equal(third.counts.revocations, revocations + 2)
    assert.equal((await third.introspect(accessToken)).active, false)
    assert.equal(await row(), undefined)
    const events = (await store.audit.recent(20)).map((event) => event.type)
    assert.ok(events.includes('vault.disconnected'))
  })

  test('a wrong encryption key fails closed: the row is refused, and the gateway mode answers vault_unavailable', async () => {
    await connectInBrowser()
    // The same key id with other bytes: AES-GCM refuses the row, nothing is guessed.
    const wrong = anotherInstance(`k2:${key()}`)
    await assert.rejects(wrong.header(userId, 'acme'), { code: 'vault_unreadable' })
    const mode = vaultMode({
      resource: gateway.resource,
      upstream: api.url,
      vault: wrong,
      settings: { mode: 'vault', connection: 'acme' } as never,
      authorizationServer: undefined,
    })
    const principal = { key: 'k', token: { subject: userId, actor: 'user' } } as never
    await assert.rejects(Promise.resolve(mode.headers(principal)), { code: 'vault_unavailable' })
    await assert.rejects(anotherInstance(`k9:${key()}`).header(userId, 'acme'), { code: 'vault_key_unknown' })
  })

  test('key rotation: a new key in front seals, the old one still opens, rekey re-seals every row, then the old key can go', async () => {
    const rotated = anotherInstance(`${NEWER},${KEYS}`)
    const before = await rotated.header(userId, 'acme')
    assert.ok(before.ok)
    assert.deepEqual(await rotated.rekey(), { resealed: 1, skipped: 0 })
    assert.equal((await row())?.keyId, 'k3')
    assert.deepEqual(await anotherInstance(NEWER).header(userId, 'acme'), before)
    assert.deepEqual(await rotated.rekey(), { resealed: 0, skipped: 0 })
    await assert.rejects(anotherInstance(KEYS).header(userId, 'acme'), { code: 'vault_key_unknown' })
  })

  test('gatehouse connections list (table and --json), rekey, and revoke, which revokes at the provider', async () => {
    const config = join(await tempDir('vault-cli'), 'gatehouse.yaml')
    await writeFile(
      config,
      stringify({
        data_dir: dataDir,
        authorization_server: {
          vault: {
            keys: `${NEWER},${KEYS}`,
            connections: [
              {
                id: 'acme',
                name: 'Acme',
                issuer: third.issuer,
                client_id: VAULT_CLIENT.id,
                client_secret: VAULT_CLIENT.secret,
              },
            ],
          },
        },
      }),
    )
    const cli = (...args: string[]) => gatehouse(['connections', ...args, '--config', config])
    const table = await cli('list')
    assert.equal(table.code, 0, table.stderr)
    assert.match(table.stdout, /^USER +CONNECTION +STATUS +SCOPE +EXPIRES +KEY +UPDATED$/m)
    assert.match(table.stdout, /^alice +acme +active +repo +\S+Z +k3 +\S+Z$/m)
    const listed = JSON.parse((await cli('list', '--json', '--user', 'alice')).stdout) as Record<
      string,
      unknown
    >[]
    assert.deepEqual(
      listed.map(({ user, user_id, connection, status, key_id }) => ({
        user,
        user_id,
        connection,
        status,
        key_id,
      })),
      [{ user: 'alice', user_id: userId, connection: 'acme', status: 'active', key_id: 'k3' }],
    )
    assert.equal((await cli('rekey')).stdout, 're-sealed 0 connection(s) with the newest key\n')
    const accessToken = (toolCalls().at(-1)?.authorization ?? '').slice('Bearer '.length)
    const revocations = third.counts.revocations
    const revoked = await cli('revoke', 'alice', 'acme')
    assert.equal(
      revoked.stdout,
      "revoked alice's acme tokens at the provider and forgot them\n",
      revoked.stderr,
    )
    assert.equal(third.counts.revocations, revocations + 2)
    assert.equal((await third.introspect(accessToken)).active, false)
    assert.equal(await row(), undefined)
    const again = await cli('revoke', 'alice', 'acme')
    assert.equal(again.code, 1)
    assert.equal(again.stderr, 'gatehouse: alice has no acme connection\n')
    assert.equal((await cli('list', '--json')).stdout, '[]\n')
  })

  test('a browser without a session: the connect page signs the user in through /authorize (PKCE, no prompt=login), then connects for that user', async () => {
    assert.equal(await row(), undefined)
    const origin = new URL(gateway.resource).origin
    const fresh = await browser.newContext()
    try {
      const tab = await fresh.newPage()
      const authorize = tab.waitForRequest((request) => new URL(request.url()).pathname === '/authorize')
      await tab.goto(connectUrl)
      const asked = new URL((await authorize).url()).searchParams
      assert.equal(asked.get('client_id'), 'gatehouse-connect')
      assert.equal(asked.get('redirect_uri'), `${origin}/interaction/connect-sign-in`)
      assert.equal(asked.get('code_challenge_method'), 'S256')
      assert.equal(asked.get('prompt'), null)
      const callback = tab.waitForRequest(
        (request) => new URL(request.url()).pathname === '/interaction/connect-sign-in',
      )
      await tab.getByLabel('Username').fill('alice')
      await tab.getByLabel('Password').fill(PASSWORD)
      await tab.getByRole('button', { name: 'Sign in' }).click()
      await tab.getByRole('button', { name: 'Connect Acme' }).waitFor()
      assert.equal(new URL(tab.url()).href, connectUrl, 'back on the connect page of the same connection')
      assert.match((await tab.locator('body').textContent()) ?? '', /Signed in as alice/)
      assert.equal((await callback).url().includes(`state=${asked.get('state')}`), true)
      assert.deepEqual(await listGrants(store, { clientId: 'gatehouse-connect' }), [], 'no grant kept')
      await tab.getByRole('button', { name: 'Connect Acme' }).click()
      await tab.getByRole('heading', { name: 'Connected accounts' }).waitFor()
      assert.equal(await tab.locator('[data-connection="acme"] .state').textContent(), 'Connected')
    } finally {
      await fresh.close()
    }
    assert.equal((await row())?.userId, userId)
    const client = await mcpClient()
    try {
      assert.equal((await whoami(client)).sub, THIRD_PARTY_ACCOUNT)
    } finally {
      await client.close()
    }
  })

  test("the connect page's sign-in refuses a forged state, another browser's state and a replayed callback, and connects nothing", async () => {
    await store.connections.delete(userId, 'acme')
    const origin = new URL(gateway.resource).origin
    const signInCallback = `${origin}/interaction/connect-sign-in`
    const refused = async (url: string, cookie?: string) => {
      const answer = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} })
      assert.equal(answer.status, 400)
      assert.match(await answer.text(), /connect_sign_in_failed/)
    }
    await refused(`${signInCallback}?code=stolen&state=forged&iss=${encodeURIComponent(origin)}`)
    await refused(`${signInCallback}?code=stolen&state=forged`, 'gatehouse-connect-signin=forged')
    const fresh = await browser.newContext()
    try {
      const tab = await fresh.newPage()
      await tab.goto(connectUrl)
      const [stateCookie] = (await fresh.cookies(origin)).filter((c) => c.name === 'gatehouse-connect-signin')
      assert.ok(stateCookie)
      // This browser's state, presented by another (no cookie, or its own cookie): refused.
      await refused(
        `${signInCallback}?code=stolen&state=${stateCookie.value}&iss=${encodeURIComponent(origin)}`,
      )
      const callback = tab.waitForRequest(
        (request) => new URL(request.url()).pathname === '/interaction/connect-sign-in',
      )
      await tab.getByLabel('Username').fill('alice')
      await tab.getByLabel('Password').fill(PASSWORD)
      await tab.getByRole('button', { name: 'Sign in' }).click()
      await tab.getByRole('button', { name: 'Connect Acme' }).waitFor()
      const used = (await callback).url()
      // The same answer again, with the state cookie put back and the browser's session: spent, refused.
      await fresh.addCookies([{ ...stateCookie }])
      const cookies = (await fresh.cookies(origin)).map((c) => `${c.name}=${c.value}`).join('; ')
      await refused(used, cookies)
    } finally {
      await fresh.close()
    }
    assert.equal(await row(), undefined)
  })

  test('not connected, raw JSON-RPC: a batch is answered per request, a lone notification gets 202, _meta capabilities ask for -32042; the API sees none of it', async () => {
    assert.equal(await row(), undefined)
    const calls = api.calls.length
    const post = (body: unknown) =>
      postRpc(gateway.resource, body, {
        authorization: `Bearer ${mcpToken}`,
        'mcp-protocol-version': '2025-11-25',
      })
    const batch = await post([
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami' } },
      { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'acme://repo' } },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 0 } },
    ])
    assert.equal(batch.status, 200)
    const message = `Connect your Acme account to use this tool: open ${connectUrl}, then try again.`
    assert.deepEqual(await batch.json(), [
      { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: message }], isError: true } },
      { jsonrpc: '2.0', id: 2, error: { code: -32603, message, data: { url: connectUrl } } },
    ])
    const notification = await post({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: 0 },
    })
    assert.equal(notification.status, 202)
    const capabilities = { 'io.modelcontextprotocol/clientCapabilities': { elicitation: { url: {} } } }
    const elicited = await post({
      jsonrpc: '2.0',
      id: 3,
      method: 'tools/call',
      params: { name: 'whoami', _meta: capabilities },
    })
    const body = (await elicited.json()) as {
      error: { code: number; data: { elicitations: { url: string }[] } }
    }
    assert.equal(body.error.code, -32042)
    assert.equal(body.error.data.elicitations[0]?.url, connectUrl)
    assert.equal(api.calls.length, calls)
  })
})
