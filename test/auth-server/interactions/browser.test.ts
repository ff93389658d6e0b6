import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import {
  createLocalUser,
  identityProviderRedirectUri,
  loginAndConsent,
} from '../../../src/auth-server/interactions/index.ts'
import { createGuard } from '../../../src/guard/index.ts'
import { launchBrowser, withContext } from '../../support/browser.ts'
import { gatehouse } from '../../support/embedded-gateway.ts'
import {
  type AuthorizationRequest,
  authorizationRequest,
  startClientCallback,
} from '../../support/login-flow.ts'
import { startSignInIdp } from '../../support/sign-in-idp.ts'
import { type Harness, registerPublicClient, SECRET, startAuthServer, token } from '../harness.ts'

const PASSWORD = 'correct horse battery staple'
const CLIENT_NAME = 'Inspector (browser test)'

let browser: Browser
before(async () => {
  browser = await launchBrowser()
})
after(() => browser.close())

/** Approves the consent page after checking what it shows, and returns the client's callback URL. */
async function approveConsent(
  page: Page,
  h: Harness,
  client: Awaited<ReturnType<typeof startClientCallback>>,
): Promise<URL> {
  await page.getByRole('heading', { name: 'Allow access?' }).waitFor()
  assert.equal(await page.locator('.client-name').textContent(), CLIENT_NAME)
  assert.equal(await page.locator('.redirect-host').textContent(), new URL(client.redirectUri).host)
  assert.ok(await page.locator('#localhost-warning').isVisible())
  assert.equal(await page.locator('.resource').textContent(), h.resource)
  assert.deepEqual(await page.locator('.scope').allTextContents(), ['mcp:read', 'mcp:write'])
  const arrival = client.next()
  await page.getByRole('button', { name: 'Approve' }).click()
  await page.locator('#done').waitFor()
  return arrival
}

/** The code for tokens, and the access token through Gatehouse's guard as the MCP server would check it. */
async function redeemAndVerify(h: Harness, clientId: string, request: AuthorizationRequest, callback: URL) {
  assert.equal(callback.searchParams.get('state'), request.state)
  assert.equal(callback.searchParams.get('iss'), h.issuer)
  const { response, body } = await token(h, {
    grant_type: 'authorization_code',
    code: callback.searchParams.get('code') ?? '',
    redirect_uri: request.redirectUri,
    code_verifier: request.pkce.verifier,
    client_id: clientId,
    resource: request.resource,
  })
  assert.equal(response.status, 200)
  const guard = await createGuard({ resource: h.resource, authorizationServers: [{ issuer: h.issuer }] })
  const result = await guard.check(
    new Request(h.resource, { method: 'POST', headers: { authorization: `Bearer ${body.access_token}` } }),
  )
  assert.equal(result.ok, true)
  if (!result.ok) throw new Error('unreachable')
  assert.deepEqual(result.token.audience, [h.resource])
  assert.deepEqual(result.token.scopes.toSorted(), ['mcp:read', 'mcp:write'])
  return result.token
}

test('Chromium: local account sign-in, consent, code with state and iss, token accepted by the guard', async () => {
  const h = await startAuthServer({ overrides: { interactions: loginAndConsent({ localAccounts: true }) } })
  const client = await startClientCallback()
  try {
    const clientId = await registerPublicClient(h, {
      client_name: CLIENT_NAME,
      redirect_uris: [client.redirectUri],
    })
    const alice = await createLocalUser(h.store, 'alice', PASSWORD)
    const request = authorizationRequest(h, clientId, client.redirectUri, 'mcp:read mcp:write')
    const callback = await withContext(browser, async (context) => {
      const page = await context.newPage()
      await page.goto(request.url)
      await page.getByLabel('Username').fill('alice')
      await page.getByLabel('Password').fill(PASSWORD)
      await page.getByRole('button', { name: 'Sign in' }).click()
      return approveConsent(page, h, client)
    })
    const verified = await redeemAndVerify(h, clientId, request, callback)
    assert.equal(verified.subject, alice.id)
    assert.equal(verified.clientId, clientId)
  } finally {
    await client.close()
    await h.close()
  }
})

test('Chromium: federated sign-in at the operator IdP; the token names the Gatehouse user; a replayed callback is refused', async () => {
  const h = await startAuthServer()
  const idp = await startSignInIdp(identityProviderRedirectUri(h.issuer, 'corp'))
  const client = await startClientCallback()
  try {
    await h.restart({
      interactions: loginAndConsent({
        identityProviders: [
          {
            id: 'corp',
            name: 'Corp SSO',
            issuer: idp.issuer,
            clientId: idp.clientId,
            clientSecret: idp.clientSecret,
          },
        ],
      }),
    })
    const clientId = await registerPublicClient(h, {
      client_name: CLIENT_NAME,
      redirect_uris: [client.redirectUri],
    })
    const request = authorizationRequest(h, clientId, client.redirectUri, 'mcp:read mcp:write')
    const callbackPath = `${new URL(identityProviderRedirectUri(h.issuer, 'corp')).pathname}?`
    await withContext(browser, async (context) => {
      const page = await context.newPage()
      const upstreamCallbacks: string[] = []
      page.on('request', (r) => {
        if (r.url().startsWith(`${h.origin}${callbackPath}`)) upstreamCallbacks.push(r.url())
      })
      await page.goto(request.url)
      assert.equal(
        await page.getByLabel('Password').count(),
        0,
        'no local accounts when a provider is configured',
      )
      await page.getByRole('button', { name: 'Continue with Corp SSO' }).click()
      // The upstream provider's development pages: any login, then its own consent.
      await page.locator('input[name="login"]').fill('jdoe')
      await page.locator('input[name="password"]').fill('anything')
      await page.getByRole('button', { name: 'Sign-in' }).click()
      await page.getByRole('button', { name: 'Continue' }).click()
      const callback = await approveConsent(page, h, client)

      const user = await h.store.users.findByExternalId(`${idp.issuer}|jdoe`)
      assert.ok(user)
      assert.equal(user.claims.email, 'jdoe@corp.example')
      assert.equal((await redeemAndVerify(h, clientId, request, callback)).subject, user.id)

      assert.equal(upstreamCallbacks.length, 1)
      const replayed = upstreamCallbacks[0] as string
      const state = new URL(replayed).searchParams.get('state') ?? ''
      // The browser's state cookie went with the first use; with it put back, the server-side record refuses.
      const cases: [string, () => Promise<unknown>, string][] = [
        ['cookie cleared', async () => {}, 'upstream_state_invalid'],
        [
          'cookie restored',
          () => context.addCookies([{ name: 'gatehouse-upstream', value: state, url: h.origin }]),
          'upstream_state_used',
        ],
      ]
      for (const [name, prepare, code] of cases) {
        await prepare()
        const response = await page.goto(replayed)
        assert.equal(response?.status(), 400, name)
        assert.equal(await page.locator('code').last().textContent(), code, name)
        assert.equal(page.url(), replayed, name)
      }
      assert.equal((await h.store.users.list()).filter((u) => u.externalId).length, 1)
    })
  } finally {
    await client.close()
    await idp.close()
    await h.close()
  }
})

test('Chromium: a federated user whose upstream groups claim has the value holds the scope; another user of that provider does not', async () => {
  const h = await startAuthServer()
  const idp = await startSignInIdp(identityProviderRedirectUri(h.issuer, 'corp'))
  const client = await startClientCallback()
  try {
    await h.restart({
      interactions: loginAndConsent({
        identityProviders: [
          {
            id: 'corp',
            name: 'Corp SSO',
            issuer: idp.issuer,
            clientId: idp.clientId,
            clientSecret: idp.clientSecret,
          },
        ],
      }),
      userScopes: {
        everyone: ['mcp:read'],
        grants: [{ scopes: ['mcp:write'], claim: { name: 'groups', value: 'admins', provider: 'corp' } }],
      },
    })
    const clientId = await registerPublicClient(h, {
      client_name: CLIENT_NAME,
      redirect_uris: [client.redirectUri],
    })
    const signIn = (login: string) =>
      withContext(browser, async (context) => {
        const request = authorizationRequest(h, clientId, client.redirectUri, 'mcp:read mcp:write')
        const page = await context.newPage()
        await page.goto(request.url)
        await page.getByRole('button', { name: 'Continue with Corp SSO' }).click()
        await page.locator('input[name="login"]').fill(login)
        await page.locator('input[name="password"]').fill('anything')
        await page.getByRole('button', { name: 'Sign-in' }).click()
        await page.getByRole('button', { name: 'Continue' }).click()
        await page.getByRole('heading', { name: 'Allow access?' }).waitFor()
        const shown = {
          scopes: await page.locator('.scope').allTextContents(),
          refused: await page.locator('.refused-scope').allTextContents(),
        }
        // The callback server also sees the browser's favicon requests: wait for the redirect itself.
        const arrival = (async () => {
          for (;;) {
            const url = await client.next()
            if (url.pathname === '/callback') return url
          }
        })()
        await page.getByRole('button', { name: 'Approve' }).click()
        const callback = await arrival
        const { body } = await token(h, {
          grant_type: 'authorization_code',
          code: callback.searchParams.get('code') ?? '',
          redirect_uri: request.redirectUri,
          code_verifier: request.pkce.verifier,
          client_id: clientId,
          resource: request.resource,
        })
        return { ...shown, scope: body.scope }
      })
    assert.deepEqual(await signIn('admin-ann'), {
      scopes: ['mcp:read', 'mcp:write'],
      refused: [],
      scope: 'mcp:read mcp:write',
    })
    assert.deepEqual(await signIn('jdoe'), {
      scopes: ['mcp:read'],
      refused: ['mcp:write'],
      scope: 'mcp:read',
    })
  } finally {
    await client.close()
    await idp.close()
    await h.close()
  }
})

test('Chromium + CLI: a federated user with an Okta-style subject (capitals) is found by `gatehouse consents revoke`', async () => {
  const h = await startAuthServer()
  const idp = await startSignInIdp(identityProviderRedirectUri(h.issuer, 'okta'))
  const client = await startClientCallback()
  try {
    await h.restart({
      interactions: loginAndConsent({
        identityProviders: [
          {
            id: 'okta',
            name: 'Okta',
            issuer: idp.issuer,
            clientId: idp.clientId,
            clientSecret: idp.clientSecret,
          },
        ],
      }),
    })
    const clientId = await registerPublicClient(h, {
      client_name: CLIENT_NAME,
      redirect_uris: [client.redirectUri],
    })
    const request = authorizationRequest(h, clientId, client.redirectUri, 'mcp:read mcp:write')
    const callback = await withContext(browser, async (context) => {
      const page = await context.newPage()
      await page.goto(request.url)
      await page.getByRole('button', { name: 'Continue with Okta' }).click()
      await page.locator('input[name="login"]').fill('00uAbC123XyZ')
      await page.locator('input[name="password"]').fill('anything')
      await page.getByRole('button', { name: 'Sign-in' }).click()
      await page.getByRole('button', { name: 'Continue' }).click()
      return approveConsent(page, h, client)
    })
    await redeemAndVerify(h, clientId, request, callback)
    const user = await h.store.users.findByExternalId(`${idp.issuer}|00uAbC123XyZ`)
    assert.equal(user?.username, 'okta:00uabc123xyz')
    assert.ok(await h.store.consents.find(user.id, clientId))

    // The administrator copies the subject as the provider's console shows it.
    const run = await gatehouse(['consents', 'revoke', 'okta:00uAbC123XyZ', clientId], '', {
      GATEHOUSE_STORAGE_URL: h.storeUrl,
      GATEHOUSE_SECRET: SECRET,
    })
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout, `revoked the consent of okta:00uabc123xyz for ${clientId}\n`)
    assert.equal(await h.store.consents.find(user.id, clientId), undefined)
  } finally {
    await client.close()
    await idp.close()
    await h.close()
  }
})
