import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { consentPage as renderConsent } from '../../../src/auth-server/interactions/consent.ts'
import {
  createLocalUser,
  loginAndConsent,
  revokeConsent,
} from '../../../src/auth-server/interactions/index.ts'
import {
  authorizationRequest,
  follow,
  type InteractionPage,
  openPage,
  startAuthorization,
  startClientCallback,
  submit,
} from '../../support/login-flow.ts'
import { type CookieJar, type Harness, registerPublicClient, startAuthServer, token } from '../harness.ts'

const PASSWORD = 'correct horse battery staple'

interface Setup {
  h: Harness
  client: Awaited<ReturnType<typeof startClientCallback>>
  clientId: string
}

async function setup(
  options: Parameters<typeof loginAndConsent>[0] = {},
  clientName?: string,
): Promise<Setup> {
  const h = await startAuthServer({
    overrides: { interactions: loginAndConsent({ localAccounts: true, ...options }) },
  })
  const client = await startClientCallback()
  const clientId = await registerPublicClient(h, {
    redirect_uris: [client.redirectUri],
    ...(clientName ? { client_name: clientName } : {}),
  })
  await createLocalUser(h.store, 'alice', PASSWORD)
  return { h, client, clientId }
}

async function teardown(s: Setup) {
  await s.client.close()
  await s.h.close()
}

const signIn = (page: InteractionPage, jar: CookieJar, username = 'alice', password = PASSWORD) =>
  submit(`${page.url}/login`, jar, { csrf: page.csrf, username, password })

/** Signs alice in and returns the consent page that follows. */
async function consentPage(s: Setup, scope?: string) {
  const request = authorizationRequest(s.h, s.clientId, s.client.redirectUri, scope)
  const { jar, page } = await startAuthorization(request)
  const next = await follow(await signIn(page, jar), jar, s.h.origin)
  assert.equal(next.status, 200)
  return { request, jar, consent: await openPage(next.url, jar) }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const errorCode = (html: string) => /Error code: <code>([a-z_]+)<\/code>/.exec(html)?.[1]

describe('login page, local accounts', () => {
  let s: Setup
  before(async () => {
    s = await setup({
      rateLimit: {
        perUserAndAddress: { freeFailures: 3, maxDelaySeconds: 600 },
        perAddress: { limit: 100, windowSeconds: 600 },
      },
    })
  })
  after(() => teardown(s))

  test('the page names the client, offers the password form with labels and no upstream buttons', async () => {
    const { page } = await startAuthorization(authorizationRequest(s.h, s.clientId, s.client.redirectUri))
    assert.equal(page.response.status, 200)
    assert.match(page.html, /<label for="username">Username<\/label>/)
    assert.match(page.html, /<label for="password">Password<\/label>/)
    assert.match(page.html, /autocomplete="current-password"/)
    assert.doesNotMatch(page.html, /Continue with/)
    assert.match(page.html, /Sign in to continue to <strong>test client [0-9a-f]{8}<\/strong>/)
    assert.ok(page.csrf.length >= 40)
  })

  test('a wrong password and an unknown user get the same answer; after the free failures each attempt waits longer (429, Retry-After)', async () => {
    const { jar, page } = await startAuthorization(
      authorizationRequest(s.h, s.clientId, s.client.redirectUri),
    )
    const attempts: [string, string][] = [
      ['alice', 'wrong password wrong'],
      ['nobody', PASSWORD],
      ['alice', ''],
    ]
    for (const [username, password] of attempts) {
      const response = await signIn(page, jar, username, password)
      assert.equal(response.status, 401, username)
      const html = await response.text()
      assert.match(html, /<p class="error" role="alert">Wrong username or password.<\/p>/)
      assert.doesNotMatch(html, /nobody/)
    }
    // `nobody` counted one of its own, alice two: her third is the last free one.
    assert.equal((await signIn(page, jar, 'alice', 'still wrong, still wrong')).status, 401)
    const limited = await signIn(page, jar)
    assert.equal(limited.status, 429, 'even the right password waits')
    assert.equal(limited.headers.get('retry-after'), '1')
    assert.equal(errorCode(await limited.text()), 'rate_limited')
    await sleep(1100)
    assert.equal((await signIn(page, jar, 'alice', 'wrong again, wrong again')).status, 401)
    const longer = await signIn(page, jar)
    assert.equal(longer.status, 429)
    assert.equal(longer.headers.get('retry-after'), '2', 'the wait doubles with each further failure')
    await longer.arrayBuffer()
    assert.equal((await signIn(page, jar, 'nobody', 'not alice, not alice')).status, 401, 'per username')
    const events = (await s.h.store.audit.recent(20)).map((e) => e.type)
    assert.ok(events.includes('login.rate_limited'))
    assert.ok(!(await s.h.store.audit.recent(20)).some((e) => JSON.stringify(e).includes(PASSWORD)))
  })

  test('ten good sign-ins in a row do not lock the user out: only wrong passwords count', async () => {
    await createLocalUser(s.h.store, 'erin', PASSWORD)
    for (let i = 0; i < 11; i++) {
      const { jar, page } = await startAuthorization(
        authorizationRequest(s.h, s.clientId, s.client.redirectUri),
      )
      const signedIn = await signIn(page, jar, 'erin')
      assert.equal(signedIn.status, 303, `sign-in ${i + 1}`)
      await signedIn.arrayBuffer()
    }
  })

  test('a burst of concurrent wrong passwords counts every one it checks: one attempt at a time per user and address', async () => {
    await createLocalUser(s.h.store, 'frank', PASSWORD)
    const { jar, page } = await startAuthorization(
      authorizationRequest(s.h, s.clientId, s.client.redirectUri),
    )
    const statuses = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const response = await signIn(page, jar, 'frank', `wrong password number ${i}`)
        await response.arrayBuffer()
        return response.status
      }),
    )
    const checked = statuses.filter((status) => status === 401).length
    assert.ok(checked >= 1 && statuses.every((status) => status === 401 || status === 429), `${statuses}`)
    const record = await s.h.store.oidcAdapter('GatehouseSignInFailures').find('frank|127.0.0.1')
    assert.equal(record?.failures, checked, 'no failure lost to a race')
  })
})

test('sign-in is also limited per client address, whatever the usernames', async () => {
  const s = await setup({ rateLimit: { perAddress: { limit: 2, windowSeconds: 60 } } })
  try {
    const { jar, page } = await startAuthorization(
      authorizationRequest(s.h, s.clientId, s.client.redirectUri),
    )
    for (const username of ['bob', 'carol']) assert.equal((await signIn(page, jar, username)).status, 401)
    const limited = await signIn(page, jar, 'alice')
    assert.equal(limited.status, 429)
    assert.equal(errorCode(await limited.text()), 'rate_limited')
  } finally {
    await teardown(s)
  }
})

test('nine wrong passwords from one address slow that address down, not the user signing in from another', async () => {
  const h = await startAuthServer({ overrides: { proxy: true, interactions: loginAndConsent() } })
  const client = await startClientCallback()
  const s = { h, client, clientId: await registerPublicClient(h, { redirect_uris: [client.redirectUri] }) }
  await createLocalUser(h.store, 'alice', PASSWORD)
  try {
    const from = async (address: string, password: string) => {
      const { jar, page } = await startAuthorization(authorizationRequest(h, s.clientId, client.redirectUri))
      const response = await fetch(`${page.url}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: {
          cookie: jar.header(),
          'content-type': 'application/x-www-form-urlencoded',
          'x-forwarded-for': address,
        },
        body: new URLSearchParams({ csrf: page.csrf, username: 'alice', password }),
      })
      await response.arrayBuffer()
      return response.status
    }
    const attacker: number[] = []
    for (let i = 0; i < 9; i++) attacker.push(await from('203.0.113.66', `guess number ${i} guess`))
    assert.deepEqual(attacker, [401, 401, 401, 401, 401, 429, 429, 429, 429], 'five free, then waits')
    assert.equal(
      await from('203.0.113.66', PASSWORD),
      429,
      'the attacking address waits even with the password',
    )
    assert.equal(await from('198.51.100.9', PASSWORD), 303, 'alice from her own address is signed in')
  } finally {
    await teardown(s)
  }
})

test('behind the trusted proxy the address is the one it appended, not what the client put first', async () => {
  const h = await startAuthServer({
    overrides: {
      proxy: true,
      interactions: loginAndConsent({ rateLimit: { perAddress: { limit: 2, windowSeconds: 3600 } } }),
    },
  })
  const client = await startClientCallback()
  const s = { h, client, clientId: await registerPublicClient(h, { redirect_uris: [client.redirectUri] }) }
  try {
    const { jar, page } = await startAuthorization(authorizationRequest(h, s.clientId, client.redirectUri))
    const attempt = (forwardedFor: string, username: string) =>
      fetch(`${page.url}/login`, {
        method: 'POST',
        headers: {
          cookie: jar.header(),
          'content-type': 'application/x-www-form-urlencoded',
          'x-forwarded-for': forwardedFor,
        },
        body: new URLSearchParams({ csrf: page.csrf, username, password: 'wrong password wrong' }),
      })
    const cases: [string, string, number][] = [
      ['198.51.100.1, 203.0.113.7', 'u1', 401],
      ['198.51.100.2, 203.0.113.7', 'u2', 401],
      ['198.51.100.3, 203.0.113.7', 'u3', 429],
      ['203.0.113.7, 203.0.113.8', 'u4', 401],
    ]
    for (const [forwardedFor, username, status] of cases) {
      assert.equal((await attempt(forwardedFor, username)).status, status, forwardedFor)
    }
  } finally {
    await teardown(s)
  }
})

test('consent page: the host of a metadata-document client, and the warning only for a loopback redirect', () => {
  const base = {
    action: '/i/x/consent',
    csrf: 't',
    clientName: 'App',
    account: 'alice',
    access: {},
    refused: {},
    issuer: 'https://as.example',
  }
  const cases: [string, string, string | undefined, string, boolean][] = [
    [
      'https://app.example.com/oauth/client.json',
      'https://app.example.com/cb',
      'app.example.com',
      'app.example.com',
      false,
    ],
    ['https://evil.example/c.json', 'http://localhost:3000/cb', 'evil.example', 'localhost:3000', true],
    ['registered-id', 'http://[::1]:8080/cb', undefined, '[::1]:8080', true],
    ['registered-id', 'http://127.0.0.1/cb', undefined, '127.0.0.1', true],
    [
      'registered-id',
      'cursor://anysphere.cursor-mcp/oauth/callback',
      undefined,
      'anysphere.cursor-mcp',
      false,
    ],
  ]
  for (const [clientId, redirectUri, clientHost, redirectHost, warned] of cases) {
    const rendered = renderConsent({ ...base, clientId, redirectUri }).value
    assert.equal(/<span class="host client-host">([^<]*)<\/span>/.exec(rendered)?.[1], clientHost, clientId)
    assert.equal(
      /<span class="host redirect-host">([^<]*)<\/span>/.exec(rendered)?.[1],
      redirectHost,
      redirectUri,
    )
    assert.equal(rendered.includes('id="localhost-warning"'), warned, redirectUri)
  }
})

describe('CSRF, framing and caching', () => {
  let s: Setup
  before(async () => {
    s = await setup()
  })
  after(() => teardown(s))

  test('a POST without the token, with a wrong one or with the token of another interaction is 403', async () => {
    const { jar, page } = await startAuthorization(
      authorizationRequest(s.h, s.clientId, s.client.redirectUri),
    )
    const other = await startAuthorization(authorizationRequest(s.h, s.clientId, s.client.redirectUri))
    assert.notEqual(other.page.csrf, page.csrf)
    const cases: [string, Record<string, string>][] = [
      ['missing', { username: 'alice', password: PASSWORD }],
      ['empty', { csrf: '', username: 'alice', password: PASSWORD }],
      ['wrong', { csrf: `${page.csrf.slice(0, -2)}xx`, username: 'alice', password: PASSWORD }],
      ['another interaction', { csrf: other.page.csrf, username: 'alice', password: PASSWORD }],
    ]
    for (const [name, fields] of cases) {
      const response = await submit(`${page.url}/login`, jar, fields)
      assert.equal(response.status, 403, name)
      assert.equal(errorCode(await response.text()), 'csrf_invalid', name)
    }
    // The same form with its own token goes through: the refusals above were the token's doing.
    const accepted = await signIn(page, jar)
    assert.equal(accepted.status, 303)
  })

  test('a sign-in form posted during consent does not switch the account', async () => {
    const { jar, consent } = await consentPage(s)
    const response = await submit(`${consent.url}/login`, jar, {
      csrf: consent.csrf,
      username: 'bob',
      password: PASSWORD,
    })
    assert.equal(response.status, 400)
    assert.equal(errorCode(await response.text()), 'interaction_expired')
  })

  test('the consent form checks the token too', async () => {
    const { jar, consent } = await consentPage(s)
    const response = await submit(`${consent.url}/consent`, jar, { decision: 'approve' })
    assert.equal(response.status, 403)
    assert.equal(errorCode(await response.text()), 'csrf_invalid')
    assert.equal(
      await s.h.store.consents.find((await s.h.store.users.findByUsername('alice'))?.id ?? '', s.clientId),
      undefined,
    )
  })

  test('every page, error and redirect forbids framing, caching and referrers', async () => {
    const { jar, page } = await startAuthorization(
      authorizationRequest(s.h, s.clientId, s.client.redirectUri),
    )
    const clientOrigin = new URL(s.client.redirectUri).origin
    const interactionCsp = `default-src 'none'; style-src 'unsafe-inline'; form-action 'self' ${clientOrigin}; frame-ancestors 'none'; base-uri 'none'`
    const plainCsp = `default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`
    const responses: [string, Response, string][] = [
      ['login page', page.response, interactionCsp],
      ['csrf refusal', await submit(`${page.url}/login`, jar, {}), interactionCsp],
      ['redirect after sign-in', await signIn(page, jar), interactionCsp],
      ['expired interaction', await fetch(`${s.h.issuer}/interaction/unknown-uid`), plainCsp],
      ['upstream callback', await fetch(`${s.h.issuer}/interaction/callback/none`), plainCsp],
    ]
    for (const [name, response, csp] of responses) {
      assert.equal(response.headers.get('content-security-policy'), csp, name)
      assert.equal(response.headers.get('x-frame-options'), 'DENY', name)
      assert.equal(response.headers.get('cache-control'), 'no-store', name)
      assert.equal(response.headers.get('referrer-policy'), 'same-origin', name)
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', name)
    }
    assert.equal(responses[2]?.[1].status, 303)
  })

  test('unknown paths and methods under the interaction path answer pages, not the provider', async () => {
    const { jar, page } = await startAuthorization(
      authorizationRequest(s.h, s.clientId, s.client.redirectUri),
    )
    const cases: [string, Promise<Response>, number, string][] = [
      ['unknown action', submit(`${page.url}/other`, jar, { csrf: page.csrf }), 404, 'not_found'],
      [
        'GET of a form action',
        fetch(`${page.url}/login`, { headers: { cookie: jar.header() } }),
        405,
        'method_not_allowed',
      ],
      [
        'page of another interaction',
        fetch(`${s.h.issuer}/interaction/AAAAAAAAAAAAAAAAAAAAA`, { headers: { cookie: jar.header() } }),
        400,
        'interaction_expired',
      ],
      ['no cookie', fetch(page.url), 400, 'interaction_expired'],
    ]
    for (const [name, pending, status, code] of cases) {
      const response = await pending
      assert.equal(response.status, status, name)
      assert.equal(errorCode(await response.text()), code, name)
    }
  })
})

describe('consent', () => {
  let s: Setup
  const hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
  before(async () => {
    s = await setup({}, hostile)
  })
  after(() => teardown(s))

  test('the page names the client as text, the redirect host with a localhost warning, the scopes and the resource', async () => {
    const { consent } = await consentPage(s, 'mcp:read mcp:write')
    assert.equal(consent.response.status, 200)
    assert.doesNotMatch(consent.html, /<script>|<img /)
    assert.match(
      consent.html,
      /<strong class="client-name">&lt;script&gt;alert\(1\)&lt;\/script&gt;&lt;img src=x onerror=&quot;alert\(2\)&quot;&gt;<\/strong>/,
    )
    const redirectHost = new URL(s.client.redirectUri).host
    assert.match(consent.html, new RegExp(`<span class="host redirect-host">${redirectHost}</span>`))
    assert.match(consent.html, /id="localhost-warning"/)
    assert.match(consent.html, new RegExp(`<code class="resource">${s.h.resource}</code>`))
    assert.match(consent.html, /<code class="scope">mcp:read<\/code>.*<code class="scope">mcp:write<\/code>/s)
    assert.doesNotMatch(consent.html, /client-host/, 'a registered client_id has no host to show')
    assert.match(consent.html, /You are signed in as <strong class="account">alice<\/strong>/)
  })

  test('deny sends access_denied to the client with state and iss, and nothing is remembered', async () => {
    const { request, jar, consent } = await consentPage(s)
    const denied = await submit(`${consent.url}/consent`, jar, { csrf: consent.csrf, decision: 'deny' })
    assert.equal(denied.status, 303)
    const atClient = new URL((await follow(denied, jar, s.h.origin)).headers.get('location') ?? '')
    assert.equal(`${atClient.origin}${atClient.pathname}`, s.client.redirectUri)
    assert.equal(atClient.searchParams.get('error'), 'access_denied')
    assert.equal(atClient.searchParams.get('state'), request.state)
    assert.equal(atClient.searchParams.get('iss'), s.h.issuer)
    assert.equal(atClient.searchParams.get('code'), null)
    const alice = await s.h.store.users.findByUsername('alice')
    assert.equal(await s.h.store.consents.find(alice?.id ?? '', s.clientId), undefined)
  })

  test('approval is remembered per user and client, skipped for the same scopes, asked again for more or after revocation', async () => {
    const alice = await s.h.store.users.findByUsername('alice')
    assert.ok(alice)
    const { request, jar, consent } = await consentPage(s)
    const approved = await submit(`${consent.url}/consent`, jar, { csrf: consent.csrf, decision: 'approve' })
    assert.equal(approved.status, 303)
    const first = new URL((await follow(approved, jar, s.h.origin)).headers.get('location') ?? '')
    assert.equal(first.searchParams.get('state'), request.state)
    const code = first.searchParams.get('code') ?? ''
    const exchanged = await token(s.h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: request.redirectUri,
      code_verifier: request.pkce.verifier,
      client_id: s.clientId,
      resource: request.resource,
    })
    assert.equal(exchanged.response.status, 200)
    assert.deepEqual((await s.h.store.consents.find(alice.id, s.clientId))?.resources, {
      [s.h.resource]: ['mcp:read'],
    })

    const again = async (scope: string) => {
      const next = authorizationRequest(s.h, s.clientId, s.client.redirectUri, scope)
      const response = await fetch(next.url, { redirect: 'manual', headers: { cookie: jar.header() } })
      jar.store(response)
      return follow(response, jar, s.h.origin)
    }
    const skipped = await again('mcp:read')
    assert.equal(skipped.status, 303)
    assert.ok(
      new URL(skipped.headers.get('location') ?? '').searchParams.get('code'),
      'no page: straight back with a code',
    )

    const more = await again('mcp:read mcp:write')
    assert.equal(more.status, 200)
    assert.match(await more.text(), /<code class="scope">mcp:write<\/code>/)

    assert.equal(await revokeConsent(s.h.store, alice.id, s.clientId), true)
    assert.equal(await revokeConsent(s.h.store, alice.id, s.clientId), false)
    const afterRevocation = await again('mcp:read')
    assert.equal(afterRevocation.status, 200)
    assert.match(await afterRevocation.text(), /<h1>Allow access\?<\/h1>/)
  })
})

test('createLocalUser: username rules, minimum length, scrypt hash that verifies; no duplicates', async () => {
  const s = await setup()
  try {
    const refused: [string, string, RegExp][] = [
      ['', PASSWORD, /username "" must be 1 to 64/],
      ['has space', PASSWORD, /username "has space"/],
      ['-dash', PASSWORD, /username "-dash"/],
      ['x'.repeat(65), PASSWORD, /must be 1 to 64/],
      ['corp:42', PASSWORD, /username "corp:42"/],
      ['dave', 'short pass', /at least 12 characters/],
      ['dave', 'p'.repeat(257), /at most 256 characters/],
      ['Alice', PASSWORD, /user alice already exists/],
    ]
    for (const [username, password, message] of refused) {
      await assert.rejects(createLocalUser(s.h.store, username, password), message, username)
    }
    const dave = await createLocalUser(s.h.store, 'Dave.Ops', PASSWORD)
    assert.equal(dave.username, 'dave.ops')
    assert.match(dave.passwordHash ?? '', /^scrypt\$ln=15,r=8,p=1\$[\w-]{22}\$[\w-]{43}$/)
    const { hashPassword, verifyPassword } = await import('../../../src/auth-server/interactions/index.ts')
    assert.equal(await verifyPassword(PASSWORD, dave.passwordHash ?? ''), true)
    assert.equal(await verifyPassword(`${PASSWORD} `, dave.passwordHash ?? ''), false)
    assert.notEqual(await hashPassword(PASSWORD), dave.passwordHash, 'a fresh salt each time')
    const weakened = (dave.passwordHash ?? '').replace('ln=15', 'ln=4')
    assert.equal(await verifyPassword(PASSWORD, weakened), false, 'parameters below the floor never verify')

    // The case-insensitive username signs in.
    const { jar, page } = await startAuthorization(
      authorizationRequest(s.h, s.clientId, s.client.redirectUri),
    )
    assert.equal((await signIn(page, jar, 'DAVE.OPS')).status, 303)
  } finally {
    await teardown(s)
  }
})
