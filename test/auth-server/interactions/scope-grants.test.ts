import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { UserScopesOptions } from '../../../src/auth-server/index.ts'
import { createLocalUser, loginAndConsent } from '../../../src/auth-server/interactions/index.ts'
import {
  type AuthorizationRequest,
  authorizationRequest,
  follow,
  openPage,
  startAuthorization,
  startClientCallback,
  submit,
} from '../../support/login-flow.ts'
import { browse, type CookieJar, type Harness, startAuthServer, token } from '../harness.ts'

const PASSWORD = 'correct horse battery staple'
// A web client: the provider reuses its remembered grant without a page (native clients are asked each time).
const WEB_CLIENT = 'web-app'
// mcp:read is basic use; mcp:write is a tool scope only bob holds.
const POLICY: UserScopesOptions = {
  everyone: ['mcp:read'],
  grants: [{ scopes: ['mcp:write'], users: ['bob'] }],
}

describe('user scope policy: consent, remembered grants and refresh give only what the user holds', () => {
  let h: Harness
  let client: Awaited<ReturnType<typeof startClientCallback>>

  before(async () => {
    client = await startClientCallback()
    h = await startAuthServer({
      overrides: {
        interactions: loginAndConsent({ localAccounts: true }),
        userScopes: POLICY,
        clients: [
          {
            client_id: WEB_CLIENT,
            application_type: 'web',
            redirect_uris: [client.redirectUri],
            token_endpoint_auth_method: 'none',
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
          },
        ],
      },
    })
    for (const name of ['alice', 'bob', 'carol']) await createLocalUser(h.store, name, PASSWORD)
  })
  after(async () => {
    await client.close()
    await h.close()
  })

  /** Signs `username` in for mcp:read and mcp:write; returns the consent page. */
  async function consentFor(username: string, scope = 'mcp:read mcp:write') {
    const request = authorizationRequest(h, WEB_CLIENT, client.redirectUri, scope)
    const { jar, page } = await startAuthorization(request)
    const signedIn = await submit(`${page.url}/login`, jar, { csrf: page.csrf, username, password: PASSWORD })
    const consent = await openPage((await follow(signedIn, jar, h.origin)).url, jar)
    assert.match(consent.html, /Allow access\?/)
    return { request, jar, consent }
  }

  async function approve(jar: CookieJar, consent: { url: string; csrf: string }) {
    return follow(
      await submit(`${consent.url}/consent`, jar, { csrf: consent.csrf, decision: 'approve' }),
      jar,
      h.origin,
    )
  }

  async function redeem(request: AuthorizationRequest, redirect: Response) {
    const location = new URL(redirect.headers.get('location') ?? '')
    assert.equal(location.searchParams.get('state'), request.state)
    const { response, body } = await token(h, {
      grant_type: 'authorization_code',
      code: location.searchParams.get('code') ?? '',
      redirect_uri: request.redirectUri,
      code_verifier: request.pkce.verifier,
      client_id: WEB_CLIENT,
      resource: request.resource,
    })
    assert.equal(response.status, 200, JSON.stringify(body))
    return body
  }

  const refresh = (refreshToken: string, extra: Record<string, string> = {}) =>
    token(h, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: WEB_CLIENT, ...extra })

  test('alice without mcp:write: the page lists it as not granted, and her token lacks it though asked for', async () => {
    const { request, jar, consent } = await consentFor('alice')
    assert.deepEqual(scopesShown(consent.html), ['mcp:read'])
    assert.deepEqual(refusedShown(consent.html), ['mcp:write'])
    assert.match(consent.html, /which your account does not hold/)
    const tokens = await redeem(request, await approve(jar, consent))
    assert.equal(tokens.scope, 'mcp:read')
    assert.equal(jwtScope(tokens.access_token), 'mcp:read')
    const alice = await h.store.users.findByUsername('alice')
    assert.deepEqual((await h.store.consents.find(alice?.id ?? '', WEB_CLIENT))?.resources, {
      [h.resource]: ['mcp:read'],
    })
    // Remembered: asked again with the same request, alice gets a code straight away, still without it.
    const again = authorizationRequest(h, WEB_CLIENT, client.redirectUri, 'mcp:read mcp:write')
    const silent = await browse(again.url, jar)
    assert.equal(silent.status, 303)
    assert.equal((await redeem(again, silent)).scope, 'mcp:read')
  })

  test('bob, whom a rule names, gets mcp:write; when the operator takes it away his next refresh and his next authorization lack it', async () => {
    const { request, jar, consent } = await consentFor('bob')
    assert.deepEqual(scopesShown(consent.html), ['mcp:read', 'mcp:write'])
    assert.deepEqual(refusedShown(consent.html), [])
    const tokens = await redeem(request, await approve(jar, consent))
    assert.equal(jwtScope(tokens.access_token), 'mcp:read mcp:write')

    await h.restart({ userScopes: { everyone: ['mcp:read'], grants: [] } })
    try {
      const refreshed = await refresh(tokens.refresh_token ?? '')
      assert.equal(refreshed.response.status, 200)
      assert.equal(refreshed.body.scope, 'mcp:read')
      assert.equal(jwtScope(refreshed.body.access_token), 'mcp:read')
      const narrowed = await refresh(refreshed.body.refresh_token ?? '', { scope: 'mcp:write' })
      assert.notEqual(narrowed.body.scope?.includes('mcp:write'), true, JSON.stringify(narrowed.body))
      assert.doesNotMatch(jwtScope(narrowed.body.access_token) ?? '', /mcp:write/)

      // The browser session's remembered grant is reused without a page, and gives no more than the refresh.
      const again = authorizationRequest(h, WEB_CLIENT, client.redirectUri, 'mcp:read mcp:write')
      const reused = await browse(again.url, jar)
      assert.equal(reused.status, 303)
      assert.equal((await redeem(again, reused)).scope, 'mcp:read')
    } finally {
      await h.restart({ userScopes: POLICY })
    }
  })

  test('prompt=consent shows the page even when the consent is remembered', async () => {
    const { request, jar, consent } = await consentFor('carol', 'mcp:read')
    await redeem(request, await approve(jar, consent))
    const remembered = authorizationRequest(h, WEB_CLIENT, client.redirectUri, 'mcp:read')
    assert.equal((await browse(remembered.url, jar)).status, 303, 'remembered: no page')
    const forced = authorizationRequest(h, WEB_CLIENT, client.redirectUri, 'mcp:read')
    const asked = await browse(`${forced.url}&prompt=consent`, jar)
    assert.equal(asked.status, 200)
    assert.match(await asked.text(), /Allow access\?/)
  })
})

test('a policy naming an unknown scope or nobody, or a username with capitals, is refused at start', async () => {
  const cases: [UserScopesOptions, RegExp][] = [
    [
      { everyone: [], grants: [{ scopes: ['files:write'], users: ['bob'] }] },
      /grants\[0\] grants files:write, which no resource has/,
    ],
    [{ everyone: [], grants: [{ scopes: ['mcp:write'] }] }, /grants\[0\] needs users or claim/],
    [{ everyone: [], grants: [{ scopes: ['mcp:write'], users: ['Bob'] }] }, /write bob, not Bob/],
    [
      {
        everyone: [],
        grants: [{ scopes: ['mcp:write'], claim: { name: 'groups', value: 1 as unknown as string } }],
      },
      /claim must be \{ name, value \}/,
    ],
  ]
  const h = await startAuthServer()
  try {
    for (const [userScopes, message] of cases) await assert.rejects(h.restart({ userScopes }), message)
  } finally {
    await h.close()
  }
})

const scopesShown = (html: string) =>
  [...html.matchAll(/<code class="scope">([^<]+)<\/code>/g)].map((m) => m[1])
const refusedShown = (html: string) =>
  [...html.matchAll(/<code class="refused-scope">([^<]+)<\/code>/g)].map((m) => m[1])

function jwtScope(jwt: string | undefined): string | undefined {
  const payload = JSON.parse(Buffer.from((jwt ?? '').split('.')[1] ?? '', 'base64url').toString()) as {
    scope?: string
  }
  return payload.scope
}
