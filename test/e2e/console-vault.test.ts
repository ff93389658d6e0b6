import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { createLocalUser } from '../../src/auth-server/index.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import type { Store } from '../../src/storage/store.ts'
import { registerPublicClient } from '../auth-server/harness.ts'
import { launchBrowser, withContext } from '../support/browser.ts'
import { asHarness, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { authorizationRequest } from '../support/login-flow.ts'
import { startThirdParty, type ThirdParty, VAULT_CLIENT } from '../support/vault-provider.ts'

const PASSWORD = 'correct horse battery staple'
const SCREENSHOTS = new URL('../../test-results/console/', import.meta.url).pathname

describe('admin console: vault connections in Chromium, revoked at a real third-party provider', () => {
  let browser: Browser
  let third: ThirdParty
  let gateway: Gateway
  let store: Store
  let origin: string
  let dataDir: string
  let aliceId: string
  let bobId: string

  before(async () => {
    await mkdir(SCREENSHOTS, { recursive: true })
    dataDir = await tempDir('console-vault')
    ;[browser, third] = await Promise.all([launchBrowser(), startThirdParty()])
    gateway = await startEmbeddedGateway(
      { dataDir },
      {
        authorization_server: {
          console: { admins: ['alice'] },
          vault: {
            keys: `k1:${randomBytes(32).toString('base64')}`,
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
    origin = new URL(gateway.resource).origin
    third.start(`${origin}/interaction/connected/acme`)
    store = gateway.authorizationServer?.store as Store
    aliceId = (await createLocalUser(store, 'alice', PASSWORD)).id
    bobId = (await createLocalUser(store, 'bob', PASSWORD)).id
  })
  after(async () => {
    await browser?.close()
    await gateway?.close()
    await third?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  const signIn = async (page: Page, username: string) => {
    await page.getByLabel('Username').fill(username)
    await page.getByLabel('Password').fill(PASSWORD)
    await page.getByRole('button', { name: 'Sign in' }).click()
  }

  /** bob signs in at the authorization server (an MCP client's authorization, up to its consent page), then connects Acme. */
  async function bobConnectsAcme() {
    await withContext(browser, async (context) => {
      const page = await context.newPage()
      const h = asHarness(gateway)
      const clientId = await registerPublicClient(h, { scope: 'mcp' })
      await page.goto(authorizationRequest(h, clientId, 'http://127.0.0.1/callback', 'mcp').url)
      await signIn(page, 'bob')
      await page.getByRole('button', { name: 'Approve' }).waitFor()
      await page.goto(`${origin}/interaction/connect/acme`)
      await page.getByRole('button', { name: 'Connect Acme' }).click()
      await page.getByRole('heading', { name: 'Connected accounts' }).waitFor()
    })
  }

  test('an admin sees bob’s connection (never a token), revokes it: the provider saw the revocation, the row is gone, the event names the admin', async () => {
    await bobConnectsAcme()
    const answer = await gateway.authorizationServer?.auth.vault?.header(bobId, 'acme')
    assert.ok(answer?.ok, 'bob is connected')
    const accessToken = answer.accessToken
    assert.equal((await third.introspect(accessToken)).active, true)
    const stored = await store.connections.find(bobId, 'acme')
    assert.ok(stored)

    // An action without the console session and its CSRF token changes nothing, and the provider sees nothing.
    const forged = await fetch(`${origin}/admin/connections/revoke`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: 'x', user: bobId, connection: 'acme' }),
    })
    assert.equal(forged.status, 403)
    assert.equal(third.counts.revocations, 0)
    assert.ok(await store.connections.find(bobId, 'acme'))

    await withContext(browser, async (context) => {
      const page = await context.newPage()
      await page.goto(`${origin}/admin`)
      await signIn(page, 'alice')
      await page
        .getByRole('navigation', { name: 'Console pages' })
        .getByRole('link', { name: 'Vault connections', exact: true })
        .click()
      await page.getByRole('heading', { level: 1, name: 'Vault connections' }).waitFor()
      const row = page.getByRole('row').filter({ hasText: 'bob' })
      const cells = await row.getByRole('cell').allTextContents()
      assert.deepEqual(cells.slice(0, 4), ['bob', 'Acme acme', 'active', 'repo'])
      assert.equal(await row.locator('time').count(), 2, 'expiry and update')
      const html = await page.content()
      for (const secret of [accessToken, stored.sealed])
        assert.ok(!html.includes(secret), 'no token on the page')
      await page.screenshot({ path: `${SCREENSHOTS}connections.png`, fullPage: true })

      await page.getByRole('button', { name: "Revoke bob's acme connection" }).click()
      assert.equal(
        await page.getByRole('status').textContent(),
        'Connection revoked at the provider and forgotten: the user’s tools get the connect URL again.',
      )
      assert.equal(await page.getByRole('row').filter({ hasText: 'bob' }).count(), 0, 'the row is gone')
      await page.screenshot({ path: `${SCREENSHOTS}connections-revoked.png`, fullPage: true })
    })

    assert.equal(third.counts.revocations, 2, 'the refresh token, then the access token')
    assert.equal((await third.introspect(accessToken)).active, false, 'the provider ended the token')
    assert.equal(await store.connections.find(bobId, 'acme'), undefined)
    const event = (await store.audit.recent(50)).find((entry) => entry.type === 'vault.disconnected')
    assert.deepEqual(event?.data, { userId: bobId, connection: 'acme', revoked: true, by: aliceId })
  })
})
