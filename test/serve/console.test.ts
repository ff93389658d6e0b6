import assert from 'node:assert/strict'
import { mkdir, rm } from 'node:fs/promises'
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { createLocalUser, listGrants } from '../../src/auth-server/index.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import type { Store } from '../../src/storage/store.ts'
import { CookieJar, register, token } from '../auth-server/harness.ts'
import { launchBrowser, withContext } from '../support/browser.ts'
import { asHarness, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { logCapture } from '../support/gateway-harness.ts'
import {
  authorizationRequest,
  follow,
  openPage,
  startAuthorization,
  startClientCallback,
  submit,
} from '../support/login-flow.ts'

const PASSWORD = 'correct horse battery staple'
const SCREENSHOTS = new URL('../../test-results/console/', import.meta.url).pathname
const XSS_NAME = `<script>document.title="pwned"</script><img src=x onerror="document.title='pwned'">`
const XSS_QUERY = `x="><img src=x onerror=alert(1)>`

describe('admin console (/admin) in Chromium, behind the embedded authorization server sign-in', () => {
  let browser: Browser
  let gateway: Gateway
  let store: Store
  let issuer: string
  let dataDir: string
  let callback: Awaited<ReturnType<typeof startClientCallback>>
  let clientId: string
  let bobId: string
  /** bob's tokens for the client with the hostile name, obtained through the real pages. */
  let bobRefresh: string

  before(async () => {
    await mkdir(SCREENSHOTS, { recursive: true })
    dataDir = await tempDir('console')
    ;[browser, callback] = await Promise.all([launchBrowser(), startClientCallback()])
    gateway = await startEmbeddedGateway(
      { dataDir },
      { authorization_server: { console: { admins: ['Alice'] } } },
    )
    issuer = new URL(gateway.resource).origin
    store = gateway.authorizationServer?.store as Store
    await createLocalUser(store, 'alice', PASSWORD)
    bobId = (await createLocalUser(store, 'bob', PASSWORD)).id
    const registered = await register(asHarness(gateway), {
      client_name: XSS_NAME,
      redirect_uris: [callback.redirectUri, `${callback.redirectUri}?${XSS_QUERY}`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    })
    assert.equal(registered.response.status, 201, JSON.stringify(registered.body))
    clientId = registered.body.client_id as string
    bobRefresh = await refreshTokenOf('bob')
  })
  after(async () => {
    await browser?.close()
    await callback?.close()
    await gateway?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  /** A user's sign-in and consent for the registered client over HTTP, then the code redeemed. */
  async function refreshTokenOf(username: string): Promise<string> {
    const h = asHarness(gateway)
    const request = authorizationRequest(h, clientId, callback.redirectUri, 'mcp')
    const { jar, page } = await startAuthorization(request)
    const signedIn = await submit(`${page.url}/login`, jar, { csrf: page.csrf, username, password: PASSWORD })
    const consent = await follow(signedIn, jar, h.origin)
    const approved = await follow(
      await submit(`${consent.url}/consent`, jar, {
        csrf: (await openPage(consent.url, jar)).csrf,
        decision: 'approve',
      }),
      jar,
      h.origin,
    )
    const code = new URL(approved.headers.get('location') ?? 'about:blank').searchParams.get('code') ?? ''
    const issued = await token(h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: callback.redirectUri,
      code_verifier: request.pkce.verifier,
      client_id: clientId,
      resource: gateway.resource,
    })
    assert.equal(issued.response.status, 200, JSON.stringify(issued.body))
    return issued.body.refresh_token as string
  }

  const refresh = (refreshToken: string) =>
    token(asHarness(gateway), {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
    })

  /** The console's sign-in over HTTP, as a browser would go: the jar then holds the console session. */
  async function consoleSession(username: string) {
    const jar = new CookieJar()
    const start = await fetch(`${issuer}/admin/grants`, { redirect: 'manual' })
    jar.store(start)
    assert.equal(start.status, 303)
    const { page } = await startAuthorization(
      { url: start.headers.get('location') ?? '' } as Parameters<typeof startAuthorization>[0],
      jar,
    )
    const signedIn = await submit(`${page.url}/login`, jar, { csrf: page.csrf, username, password: PASSWORD })
    const back = await follow(signedIn, jar, issuer)
    const location = back.headers.get('location') ?? ''
    assert.ok(location.startsWith(`${issuer}/admin/callback?`), `${back.status} ${location}`)
    const arrived = await fetch(location, { redirect: 'manual', headers: { cookie: jar.header() } })
    jar.store(arrived)
    return { jar, arrived, callbackUrl: location, html: await arrived.text() }
  }

  async function signInInBrowser(page: Page, username: string) {
    await page.goto(`${issuer}/admin`)
    await page.getByLabel('Username').fill(username)
    await page.getByLabel('Password').fill(PASSWORD)
    await page.getByRole('button', { name: 'Sign in' }).click()
  }

  const nav = (page: Page) => page.getByRole('navigation', { name: 'Console pages' })
  const shot = (page: Page, name: string) =>
    page.screenshot({ path: `${SCREENSHOTS}${name}.png`, fullPage: true })

  test('an admin signs in, sees each page, revokes a grant (its refresh token is refused at /token) and rotates the key', async () => {
    await withContext(browser, async (context) => {
      const page = await context.newPage()
      await signInInBrowser(page, 'alice')
      await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
      const [cookie] = (await context.cookies(issuer)).filter((c) => c.name === 'gatehouse-admin')
      assert.ok(cookie, 'the console session cookie')
      assert.equal(cookie.httpOnly, true)
      assert.equal(cookie.sameSite, 'Strict')
      await page.getByRole('navigation', { name: 'Console pages' }).waitFor()
      await page.keyboard.press('Tab')
      assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content')
      assert.deepEqual(await listGrants(store, { clientId: 'gatehouse-console' }), [], 'no grant kept')
      await shot(page, 'overview')

      const visit = async (link: string, heading: string, name: string) => {
        await nav(page).getByRole('link', { name: link, exact: true }).click()
        await page.getByRole('heading', { level: 1, name: heading }).waitFor()
        await shot(page, name)
      }
      await visit('Clients', 'Clients', 'clients')
      const row = page.getByRole('row').filter({ hasText: clientId })
      assert.equal(await row.getByRole('cell').first().textContent(), XSS_NAME, 'the name is shown as text')
      assert.ok((await row.textContent())?.includes(`${callback.redirectUri}?${XSS_QUERY}`))
      assert.ok(await row.locator('time').count(), 'bob’s token issuance is its last use')
      assert.equal(await page.title(), 'Clients · Gatehouse console', 'no script ran')
      assert.equal(await page.locator('main img, main script').count(), 0, 'no element was injected')

      await visit('Users', 'Users', 'users')
      assert.equal(await page.getByRole('cell', { name: 'bob', exact: true }).count(), 1)
      await visit('Signing keys', 'Signing keys', 'keys')
      const kidsBefore = (await store.keys.list()).map((key) => key.kid)
      await visit('Vault connections', 'Vault connections', 'connections-not-configured')
      assert.ok((await page.locator('main').textContent())?.includes('The token vault is not configured'))
      assert.equal(await page.getByRole('table').count(), 0)
      await visit('Upstream health', 'Upstream health', 'health')
      assert.equal(await page.locator('.ok').textContent(), 'ready')

      await visit('Grants and consents', 'Grants and consents', 'grants')
      const beforeRevoke = await refresh(bobRefresh)
      assert.equal(beforeRevoke.response.status, 200, 'the refresh token works before')
      bobRefresh = beforeRevoke.body.refresh_token as string
      await page.getByRole('button', { name: `Revoke bob's access for ${clientId}` }).click()
      await page.getByRole('status').waitFor()
      await shot(page, 'grants-revoked')
      assert.deepEqual(await listGrants(store, { userId: bobId }), [])
      const refused = await refresh(bobRefresh)
      assert.equal(refused.response.status, 400)
      assert.equal(refused.body.error, 'invalid_grant')

      await nav(page).getByRole('link', { name: 'Signing keys', exact: true }).click()
      // With the keyboard only.
      await page.getByRole('button', { name: 'Rotate the signing key' }).focus()
      await page.keyboard.press('Enter')
      await page.getByRole('status').waitFor()
      const after = await store.keys.list()
      assert.equal(after.length, kidsBefore.length + 1)
      const active = after.find((key) => key.state === 'active')
      assert.ok(active && !kidsBefore.includes(active.kid), 'a new key is active')
      await shot(page, 'keys-rotated')

      await visit('Audit events', 'Audit events', 'audit')
      for (const type of ['token.issued', 'admin.signed_in', 'consent.revoked', 'key.rotated'])
        assert.ok(await page.getByRole('cell', { name: type, exact: true }).count(), type)
      const reasons = page.getByRole('table', { name: /Refusals by reason/ })
      assert.equal(
        await reasons
          .getByRole('row')
          .filter({ hasText: 'token.refused invalid_grant' })
          .getByRole('cell')
          .last()
          .textContent(),
        '1',
        'the refused refresh, by its reason',
      )
    })
  })

  test('a non-admin who signs in is refused: 403, nothing of the console, no session', async () => {
    await withContext(browser, async (context) => {
      const page = await context.newPage()
      const answered = page.waitForResponse((response) =>
        response.url().startsWith(`${issuer}/admin/callback`),
      )
      await signInInBrowser(page, 'bob')
      assert.equal((await answered).status(), 403)
      await page.getByRole('heading', { name: 'Not an administrator' }).waitFor()
      assert.equal(await page.getByRole('navigation').count(), 0)
      assert.ok(!(await page.content()).includes(clientId))
      assert.equal((await context.cookies(issuer)).filter((c) => c.name === 'gatehouse-admin').length, 0)
      await shot(page, 'not-admin')
    })
    const direct = await consoleSession('bob')
    assert.equal(direct.arrived.status, 403)
    const page = await fetch(`${issuer}/admin/clients`, {
      redirect: 'manual',
      headers: { cookie: direct.jar.header() },
    })
    assert.equal(page.status, 303, 'still no session: sent to sign in')
  })

  test('a forged or stale session cookie: pages send to sign-in, actions are refused, nothing changes', async () => {
    const keys = await store.keys.list()
    for (const forged of [
      `gatehouse-admin=${'A'.repeat(43)}`,
      'gatehouse-admin=../../x',
      'gatehouse-admin=',
    ]) {
      const page = await fetch(`${issuer}/admin/users`, { redirect: 'manual', headers: { cookie: forged } })
      assert.equal(page.status, 303)
      assert.ok(page.headers.get('location')?.startsWith(`${issuer}/authorize?`))
      assert.ok(!(await page.text()).includes('bob'))
      const action = await fetch(`${issuer}/admin/keys/rotate`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: forged, origin: issuer, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'csrf=x',
      })
      assert.equal(action.status, 403)
    }
    assert.deepEqual(await store.keys.list(), keys)
  })

  test('CSRF: a form of another origin, a missing or foreign token, no Origin: 403 and nothing changed', async () => {
    const carolRefresh = await (async () => {
      await createLocalUser(store, 'carol', PASSWORD)
      return refreshTokenOf('carol')
    })()
    const carolId = (await store.users.findByUsername('carol'))?.id as string
    const { jar } = await consoleSession('alice')
    const other = await consoleSession('alice')
    const otherCsrf = /name="csrf" value="([^"]+)"/.exec(
      await (await fetch(`${issuer}/admin/grants`, { headers: { cookie: other.jar.header() } })).text(),
    )?.[1]
    const grantsPage = await (
      await fetch(`${issuer}/admin/grants`, { headers: { cookie: jar.header() } })
    ).text()
    const csrf = /name="csrf" value="([^"]+)"/.exec(grantsPage)?.[1] as string
    assert.ok(csrf && otherCsrf && csrf !== otherCsrf)
    const post = (headers: Record<string, string>, body: Record<string, string>) =>
      fetch(`${issuer}/admin/grants/revoke`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(body),
      })
    const fields = { user: carolId, client: clientId }
    const attempts = [
      post({ origin: issuer }, fields),
      post({ origin: issuer }, { ...fields, csrf: otherCsrf as string }),
      post({}, { ...fields, csrf }),
      post({ origin: 'http://evil.example' }, { ...fields, csrf }),
      post({ origin: issuer, 'sec-fetch-site': 'same-site' }, { ...fields, csrf }),
      post({ origin: issuer, 'content-type': 'text/plain' }, { ...fields, csrf }),
      post({ origin: issuer }, { ...fields, csrf, padding: 'x'.repeat(8192) }),
      post({ origin: `${issuer}, ${issuer}` }, { ...fields, csrf }),
    ]
    for (const response of await Promise.all(attempts)) {
      assert.equal(response.status, 403)
      assert.match(await response.text(), /console_csrf_invalid/)
    }
    assert.equal((await listGrants(store, { userId: carolId })).length, 1, 'nothing changed')
    const noVault = await fetch(`${issuer}/admin/connections/revoke`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded', origin: issuer },
      body: new URLSearchParams({ csrf, user: carolId, connection: 'acme' }),
    })
    assert.equal(noVault.status, 404, 'no vault: its action is not a page either')

    // In Chromium: a page on another port of the host (same site, so the Strict cookie goes along) posts.
    const attacker = await serveHtml(
      `<form id="f" method="post" action="${issuer}/admin/grants/revoke"><input name="user" value="${carolId}"><input name="client" value="${clientId}"></form><script>document.getElementById('f').submit()</script>`,
    )
    try {
      await withContext(browser, async (context) => {
        const page = await context.newPage()
        await signInInBrowser(page, 'alice')
        await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
        const answered = page.waitForResponse((r) => r.url() === `${issuer}/admin/grants/revoke`)
        await page.goto(attacker.url)
        const response = await answered
        assert.equal(response.status(), 403)
        assert.equal(response.request().headers().origin, new URL(attacker.url).origin)
        await page.getByRole('heading', { name: 'Request refused' }).waitFor()
        await shot(page, 'csrf-refused')
      })
    } finally {
      attacker.server.close()
    }
    assert.equal((await listGrants(store, { userId: carolId })).length, 1, 'nothing changed')
    assert.equal((await refresh(carolRefresh)).response.status, 200, "carol's refresh token still works")
  })

  test('the sign-in callback cannot be replayed, nor used without its state cookie', async () => {
    const { callbackUrl } = await consoleSession('alice')
    const state = new URL(callbackUrl).searchParams.get('state')
    // With the state cookie kept (a copied browser), and without it.
    for (const cookie of [`gatehouse-admin-signin=${state}`, '']) {
      const replay = await fetch(callbackUrl, { redirect: 'manual', headers: { cookie } })
      assert.equal(replay.status, 400)
      assert.match(await replay.text(), /console_sign_in_failed/)
    }
    const forged = await fetch(`${issuer}/admin/callback?code=x&state=y&iss=${encodeURIComponent(issuer)}`, {
      headers: { cookie: 'gatehouse-admin-signin=y' },
    })
    assert.equal(forged.status, 400, 'a state that was never issued')
  })

  test('route twins under /admin never reach a page; answers are uncached, unframed, script-free', async () => {
    const { jar } = await consoleSession('alice')
    const cookie = jar.header()
    const real = await fetch(`${issuer}/admin/clients`, { headers: { cookie } })
    assert.equal(real.status, 200)
    assert.equal(real.headers.get('cache-control'), 'no-store')
    assert.equal(real.headers.get('x-frame-options'), 'DENY')
    const csp = real.headers.get('content-security-policy') ?? ''
    assert.match(
      csp,
      /^default-src 'none'; style-src 'sha256-[\w+/=]+'; form-action 'self'; frame-ancestors 'none'/,
    )
    const body = await real.text()
    assert.ok(
      body.includes('&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;'),
      'the name is escaped',
    )
    assert.ok(!body.includes('<script>') && !body.includes('<img src=x'))
    assert.ok(body.includes('x=&quot;&gt;&lt;img src=x onerror=alert(1)&gt;'), 'the redirect URI is escaped')

    for (const path of [
      '/admin/',
      '/ADMIN',
      '/Admin/clients',
      '/admin/clients/',
      '/admin/CLIENTS',
      '/admin/../admin/clients',
      '/admin/./clients',
      '/admin/%2e%2e/admin/clients',
      '/admin%2fclients',
      '/%61dmin/clients',
      '/admin/clients%00',
      '/admin//clients',
      '/admin\\clients',
    ]) {
      // Sent as written: fetch would resolve the dots and backslashes first, as a browser does.
      const { status, text } = await rawGet(`${issuer}${path}`, cookie)
      assert.equal(status, 404, path)
      assert.match(text, /console_not_found/, path)
      assert.ok(!text.includes(clientId), path)
    }
    const wrongMethod = await fetch(`${issuer}/admin/keys/rotate`, { headers: { cookie } })
    assert.equal(wrongMethod.status, 405)
  })
})

test('no admins configured: the console is off, said at start; /admin is nothing, and no console client exists', async () => {
  const dataDir = await tempDir('console-off')
  const log = logCapture()
  const gateway = await startEmbeddedGateway({ dataDir }, {}, log)
  try {
    const issuer = new URL(gateway.resource).origin
    assert.ok(
      log.lines.some((line) => line.includes('admin console off: no authorization_server.console.admins')),
    )
    const page = await fetch(`${issuer}/admin`, { redirect: 'manual' })
    assert.equal(page.status, 404)
    assert.equal(page.headers.get('location'), null)
    assert.equal(gateway.authorizationServer?.auth.console, undefined)
    const start = await fetch(
      `${issuer}/authorize?client_id=gatehouse-console&response_type=code&scope=openid&code_challenge=${'a'.repeat(43)}&code_challenge_method=S256&redirect_uri=${encodeURIComponent(`${issuer}/admin/callback`)}`,
      { redirect: 'manual' },
    )
    assert.equal(start.status, 400, 'unknown client')
  } finally {
    await gateway.close()
    await rm(dataDir, { recursive: true, force: true })
  }
})

function rawGet(url: string, cookie: string): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(url)
  const path = url.slice(new URL(url).origin.length)
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path, headers: { cookie } }, (res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => {
        text += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function serveHtml(page: string): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(page))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` }
}
