import assert from 'node:assert/strict'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import {
  type IdentityProvider,
  identityProviderRedirectUri,
  loginAndConsent,
} from '../../../src/auth-server/interactions/index.ts'
import { InteractionCookie } from '../../../src/auth-server/interactions/security.ts'
import {
  authorizationRequest,
  startAuthorization,
  startClientCallback,
  submit,
} from '../../support/login-flow.ts'
import { type SignInIdp, startSignInIdp } from '../../support/sign-in-idp.ts'
import { CookieJar, type Harness, registerPublicClient, startAuthServer } from '../harness.ts'

const errorCode = (html: string) => /Error code: <code>([a-z_]+)<\/code>/.exec(html)?.[1]

describe('federation over HTTP', () => {
  let h: Harness
  let idp: SignInIdp
  let client: Awaited<ReturnType<typeof startClientCallback>>
  let clientId: string

  before(async () => {
    h = await startAuthServer()
    idp = await startSignInIdp(identityProviderRedirectUri(h.issuer, 'corp'))
    const upstream: IdentityProvider[] = [
      {
        id: 'corp',
        name: 'Corp SSO',
        issuer: idp.issuer,
        clientId: idp.clientId,
        clientSecret: idp.clientSecret,
      },
      // Nothing listens on port 9 of loopback.
      { id: 'down', name: 'Down <b>IdP</b>', issuer: 'http://127.0.0.1:9', clientId: 'x', clientSecret: 'y' },
    ]
    await h.restart({ interactions: loginAndConsent({ identityProviders: upstream }) })
    client = await startClientCallback()
    clientId = await registerPublicClient(h, { redirect_uris: [client.redirectUri] })
  })
  after(async () => {
    await client.close()
    await idp.close()
    await h.close()
  })

  /** Presses "Continue with Corp SSO": returns the upstream authorization URL and the jar holding the state cookie. */
  async function leaveForUpstream(providerId = 'corp') {
    const { jar, page } = await startAuthorization(authorizationRequest(h, clientId, client.redirectUri))
    const response = await submit(`${page.url}/federate/${providerId}`, jar, { csrf: page.csrf })
    return { jar, page, response, location: new URL(response.headers.get('location') ?? 'about:blank') }
  }

  const callback = (jar: CookieJar, params: Record<string, string>) =>
    fetch(`${identityProviderRedirectUri(h.issuer, 'corp')}?${new URLSearchParams(params)}`, {
      redirect: 'manual',
      headers: { cookie: jar.header() },
    })

  test('the login page offers one button per provider (names escaped) and no password form; CSP allows their origins', async () => {
    const { page } = await startAuthorization(authorizationRequest(h, clientId, client.redirectUri))
    assert.match(page.html, /<button type="submit">Continue with Corp SSO<\/button>/)
    assert.match(page.html, /<button type="submit">Continue with Down &lt;b&gt;IdP&lt;\/b&gt;<\/button>/)
    assert.doesNotMatch(page.html, /type="password"/)
    assert.match(
      page.response.headers.get('content-security-policy') ?? '',
      new RegExp(
        `form-action 'self' ${idp.issuer} http://127\\.0\\.0\\.1:9 ${new URL(client.redirectUri).origin};`,
      ),
    )
  })

  test('the upstream request carries PKCE S256, state and nonce; the state cookie is set with it, 303', async () => {
    const { response, location } = await leaveForUpstream()
    assert.equal(response.status, 303)
    assert.equal(`${location.origin}${location.pathname}`, `${idp.issuer}/auth`)
    const params = location.searchParams
    assert.equal(params.get('client_id'), idp.clientId)
    assert.equal(params.get('redirect_uri'), identityProviderRedirectUri(h.issuer, 'corp'))
    assert.equal(params.get('code_challenge_method'), 'S256')
    assert.match(params.get('code_challenge') ?? '', /^[\w-]{43}$/)
    assert.match(params.get('nonce') ?? '', /^[\w-]{43}$/)
    const state = params.get('state') ?? ''
    assert.match(state, /^[\w-]{43}$/)
    assert.deepEqual(response.headers.getSetCookie(), [
      `gatehouse-upstream=${state}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600`,
    ])
  })

  test('upstream access_denied: a clear page with a way back, and the state cannot be used again', async () => {
    const { jar, page, location } = await leaveForUpstream()
    const state = location.searchParams.get('state') ?? ''
    const denied = await callback(jar, { error: 'access_denied', state, iss: idp.issuer })
    assert.equal(denied.status, 400)
    const html = await denied.text()
    assert.equal(errorCode(html), 'upstream_denied')
    assert.match(
      html,
      new RegExp(`<a href="${new URL(page.url).pathname}">Choose another way to sign in</a>`),
    )
    jar.store(new Response(null, { headers: { 'set-cookie': `gatehouse-upstream=${state}` } }))
    const replayed = await callback(jar, { code: 'x', state, iss: idp.issuer })
    assert.equal(errorCode(await replayed.text()), 'upstream_state_used')
  })

  test('a missing, foreign or mismatched state, and a mix-up (wrong iss), sign nobody in', async () => {
    const usersBefore = (await h.store.users.list()).length
    const iss = idp.issuer
    // The logged reason says which check refused it (the page stays generic).
    const cases: [string, (state: string, jar: CookieJar) => Promise<Response>, string, string?][] = [
      ['no state', (_s, jar) => callback(jar, { code: 'x', iss }), 'upstream_state_invalid'],
      [
        'no state cookie',
        (state) => callback(new CookieJar(), { code: 'x', state, iss }),
        'upstream_state_invalid',
      ],
      [
        'another state',
        (_s, jar) => callback(jar, { code: 'x', state: 'A'.repeat(43), iss }),
        'upstream_state_invalid',
      ],
      [
        'wrong iss',
        (state, jar) => callback(jar, { code: 'x', state, iss: 'http://127.0.0.1:1' }),
        'upstream_failed',
        'unexpected "iss" (issuer) response parameter value',
      ],
      [
        'no iss from a provider that sends it',
        (state, jar) => callback(jar, { code: 'x', state }),
        'upstream_failed',
        'response parameter "iss" (issuer) missing',
      ],
      [
        'forged code',
        (state, jar) => callback(jar, { code: 'forged', state, iss }),
        'upstream_failed',
        'invalid_grant',
      ],
    ]
    for (const [name, send, code, reason] of cases) {
      const { jar, location } = await leaveForUpstream()
      const logged = h.logger.entries.length
      const response = await send(location.searchParams.get('state') ?? '', jar)
      assert.equal(response.status, 400, name)
      assert.equal(errorCode(await response.text()), code, name)
      const refusal = h.logger.entries
        .slice(logged)
        .find((e) => e.message === 'identity provider sign-in response refused')
      assert.equal(refusal?.fields?.reason, reason, name)
    }
    assert.equal((await h.store.users.list()).length, usersBefore)
  })

  test('an unreachable provider gives a 502 page, not a crash', async () => {
    const { response } = await leaveForUpstream('down')
    assert.equal(response.status, 502)
    assert.equal(errorCode(await response.text()), 'upstream_unavailable')
    assert.ok(h.logger.entries.some((e) => e.message === 'identity provider discovery failed'))
  })

  test('an unknown provider id is a 404 page', async () => {
    const { response } = await leaveForUpstream('nope')
    assert.equal(response.status, 404)
    assert.equal(errorCode(await response.text()), 'not_found')
  })
})

test('cookies are __Host- with Secure on an https issuer, and plain on an http loopback one', () => {
  const cases: [string, string][] = [
    [
      'https://as.example.com/oauth',
      '__Host-gatehouse-upstream=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60',
    ],
    ['http://127.0.0.1:8080', 'gatehouse-upstream=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60'],
  ]
  for (const [issuer, expected] of cases) {
    const res = new ServerResponse(new IncomingMessage(new Socket()))
    new InteractionCookie(issuer, 'gatehouse-upstream').set(res, 'v', 60)
    assert.deepEqual(res.getHeader('set-cookie'), [expected], issuer)
  }
})

test('configuration mistakes are refused at start with the setting named', () => {
  const good = { id: 'corp', name: 'Corp', issuer: 'https://idp.example', clientId: 'c', clientSecret: 's' }
  const cases: [Parameters<typeof loginAndConsent>[0], RegExp][] = [
    [{ localAccounts: false }, /enable local accounts or configure at least one identity provider/],
    [{ identityProviders: [{ ...good, id: 'Corp SSO' }] }, /id must be 1 to 32 of a-z/],
    [{ identityProviders: [good, good] }, /"corp" is configured twice/],
    [{ identityProviders: [{ ...good, issuer: 'http://idp.example' }] }, /issuer must be an https URL/],
    [{ identityProviders: [{ ...good, clientSecret: '' }] }, /name, clientId and clientSecret are required/],
    [
      { rateLimit: { perUserAndAddress: { maxDelaySeconds: 0 } } },
      /rateLimit.perUserAndAddress must be \{ freeFailures, maxDelaySeconds \}/,
    ],
  ]
  for (const [options, message] of cases) assert.throws(() => loginAndConsent(options), message)
})
