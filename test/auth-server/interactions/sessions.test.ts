import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { Browser } from 'playwright-core'
import { createAuthorizationServer } from '../../../src/auth-server/index.ts'
import { createLocalUser, loginAndConsent } from '../../../src/auth-server/interactions/index.ts'
import { openStore } from '../../../src/storage/open.ts'
import { launchBrowser, withContext } from '../../support/browser.ts'
import {
  authorizationRequest,
  follow,
  type InteractionPage,
  openPage,
  startAuthorization,
  startClientCallback,
  submit,
} from '../../support/login-flow.ts'
import { createTestCertificates } from '../../support/test-ca.ts'
import { CookieJar, type Harness, registerPublicClient, SECRET, startAuthServer, token } from '../harness.ts'

const PASSWORD = 'correct horse battery staple'

interface Setup {
  h: Harness
  client: Awaited<ReturnType<typeof startClientCallback>>
  /** A client both alice and mallory use. */
  clientId: string
  /** A client only mallory has used. */
  target: string
  alice: string
  mallory: string
}

async function setup(): Promise<Setup> {
  const h = await startAuthServer({ overrides: { interactions: loginAndConsent({ localAccounts: true }) } })
  const client = await startClientCallback()
  const clientId = await registerPublicClient(h, { redirect_uris: [client.redirectUri] })
  const target = await registerPublicClient(h, { redirect_uris: [client.redirectUri], client_name: 'Target' })
  const alice = (await createLocalUser(h.store, 'alice', PASSWORD)).id
  const mallory = (await createLocalUser(h.store, 'mallory', PASSWORD)).id
  return { h, client, clientId, target, alice, mallory }
}

const signIn = (page: InteractionPage, jar: CookieJar, username: string) =>
  submit(`${page.url}/login`, jar, { csrf: page.csrf, username, password: PASSWORD })

/** A whole authorization in `jar` with a sign-in as `username` and consent; returns the client's callback URL. */
async function authorizeAs(s: Setup, jar: CookieJar, clientId: string, username: string): Promise<URL> {
  const request = authorizationRequest(s.h, clientId, s.client.redirectUri)
  const { page } = await startAuthorization(request, jar)
  const next = await follow(await signIn(page, jar, username), jar, s.h.origin)
  // A consent remembered from an earlier authorization goes straight to the client.
  if (next.status === 303) return callbackOf(next)
  const consent = await openPage(next.url, jar)
  assert.match(consent.html, /Allow access\?/)
  return approve(s, consent, jar)
}

/** Approves a consent page; returns the URL the browser is then sent to (the client's callback). */
async function approve(s: Setup, consent: InteractionPage, jar: CookieJar): Promise<URL> {
  const response = await submit(`${consent.url}/consent`, jar, { csrf: consent.csrf, decision: 'approve' })
  return callbackOf(await follow(response, jar, s.h.origin))
}

function callbackOf(response: Response): URL {
  const location = new URL(response.headers.get('location') ?? 'about:blank')
  assert.ok(location.searchParams.get('code'), `a code for the client: ${location}`)
  return location
}

/** The `sub` of the access token a callback's code gives. */
async function subjectOf(
  s: Setup,
  clientId: string,
  request: ReturnType<typeof authorizationRequest>,
  callback: URL,
) {
  const { body } = await token(s.h, {
    grant_type: 'authorization_code',
    code: callback.searchParams.get('code') ?? '',
    redirect_uri: request.redirectUri,
    code_verifier: request.pkce.verifier,
    client_id: clientId,
    resource: request.resource,
  })
  assert.ok(body.access_token, `a token for ${callback}: ${JSON.stringify(body)}`)
  const payload = (body.access_token ?? '').split('.')[1] ?? ''
  return JSON.parse(Buffer.from(payload, 'base64url').toString()).sub as string
}

/** The attacker's page: another port of the same host, answering with the cookies it was given. */
async function startAttackerPage(cookies: string[]): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.setHeader(
      'set-cookie',
      cookies.map((c) => `${c}; Path=/`),
    )
    res.end('<h1 id="planted">nothing to see</h1>')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server }
}

/** The cookies named `names` (and their signatures) from a jar's Cookie header. */
function pick(jar: CookieJar, ...names: string[]): string[] {
  return jar
    .header()
    .split('; ')
    .filter((pair) => names.some((n) => pair.startsWith(`${n}=`) || pair.startsWith(`${n}.sig=`)))
}

describe('login CSRF: a session cookie planted from another port of the host', () => {
  let s: Setup
  let attacker: Awaited<ReturnType<typeof startAttackerPage>> | undefined
  before(async () => {
    s = await setup()
  })
  after(async () => {
    attacker?.server.close()
    await s.client.close()
    await s.h.close()
  })

  test('the victim, signed in as herself, is asked to sign in: nothing is issued to the attacker account', async () => {
    const malloryJar = new CookieJar()
    await authorizeAs(s, malloryJar, s.target, 'mallory')
    const victim = new CookieJar()
    await authorizeAs(s, victim, s.clientId, 'alice')
    // The attacker's page sets its own session cookie (a cookie for 127.0.0.1, whatever the port).
    attacker = await startAttackerPage(pick(malloryJar, 'gatehouse-session'))
    victim.store(await fetch(attacker.url))
    assert.deepEqual(pick(victim, 'gatehouse-session'), pick(malloryJar, 'gatehouse-session'), 'planted')

    const request = authorizationRequest(s.h, s.target, s.client.redirectUri)
    const first = await fetch(request.url, { redirect: 'manual', headers: { cookie: victim.header() } })
    victim.store(first)
    assert.equal(first.status, 303)
    const location = new URL(first.headers.get('location') ?? '', s.h.origin)
    assert.ok(location.pathname.startsWith('/interaction/'), `an interaction, not the client: ${location}`)
    const page = await openPage(location.href, victim)
    assert.match(page.html, /Sign in to continue to <strong>Target<\/strong>/)
    assert.doesNotMatch(page.html, /mallory/)
    assert.deepEqual(pick(victim, 'gatehouse-session'), [], 'the planted session is cleared in the browser')
    // Signing in as herself finishes as alice.
    const consent = await openPage(
      (await follow(await signIn(page, victim, 'alice'), victim, s.h.origin)).url,
      victim,
    )
    assert.match(consent.html, /signed in as <strong class="account">alice<\/strong>/)
    assert.equal(await subjectOf(s, s.target, request, await approve(s, consent, victim)), s.alice)
  })

  test('with the binding cookie planted too, a client new to that session shows the account before anything is issued', async () => {
    const malloryJar = new CookieJar()
    await authorizeAs(s, malloryJar, s.target, 'mallory')
    const victim = new CookieJar()
    attacker?.server.close()
    attacker = await startAttackerPage(pick(malloryJar, 'gatehouse-session', 'gatehouse-login'))
    victim.store(await fetch(attacker.url))
    const request = authorizationRequest(s.h, s.clientId, s.client.redirectUri)
    const { page } = await startAuthorization(request, victim)
    assert.match(page.html, /<h1>Continue\?<\/h1>/)
    assert.match(page.html, /as <strong class="account">mallory<\/strong>\?/)
    assert.match(page.html, /Use another account/)
    assert.equal(page.response.status, 200)
  })
})

describe('account chooser', () => {
  let s: Setup
  before(async () => {
    s = await setup()
  })
  after(async () => {
    await s.client.close()
    await s.h.close()
  })

  test('a client new to this browser session: "Continue as alice?" first; once used, no page', async () => {
    const jar = new CookieJar()
    await authorizeAs(s, jar, s.clientId, 'alice')
    const request = authorizationRequest(s.h, s.target, s.client.redirectUri)
    const { page } = await startAuthorization(request, jar)
    assert.match(
      page.html,
      /Continue to <strong class="client-name">Target<\/strong> as <strong class="account">alice<\/strong>\?/,
    )
    const consent = await openPage(
      (await follow(await submit(`${page.url}/continue`, jar, { csrf: page.csrf }), jar, s.h.origin)).url,
      jar,
    )
    assert.match(consent.html, /Allow access\?/)
    assert.equal(await subjectOf(s, s.target, request, await approve(s, consent, jar)), s.alice)

    // The same client again from this browser: remembered session and consent, straight to the client.
    const again = authorizationRequest(s.h, s.target, s.client.redirectUri)
    const started = await fetch(again.url, { redirect: 'manual', headers: { cookie: jar.header() } })
    jar.store(started)
    const response = await follow(started, jar, s.h.origin)
    assert.equal(response.status, 303, await response.text())
    assert.equal(await subjectOf(s, s.target, again, callbackOf(response)), s.alice)
  })

  test('"Use another account" ends the session and starts the same authorization at the sign-in page', async () => {
    const jar = new CookieJar()
    await authorizeAs(s, jar, s.clientId, 'alice')
    const request = authorizationRequest(s.h, s.target, s.client.redirectUri)
    const { page } = await startAuthorization(request, jar)
    const switched = await submit(`${page.url}/switch`, jar, { csrf: page.csrf })
    assert.equal(switched.status, 303)
    const restart = new URL(switched.headers.get('location') ?? '')
    assert.equal(restart.pathname, '/authorize')
    assert.equal(restart.searchParams.get('state'), request.state)
    const login = await openPage((await follow(switched, jar, s.h.origin)).url, jar)
    assert.match(login.html, /Sign in to continue to <strong>Target<\/strong>/)
    const consent = await openPage(
      (await follow(await signIn(login, jar, 'mallory'), jar, s.h.origin)).url,
      jar,
    )
    assert.match(consent.html, /signed in as <strong class="account">mallory<\/strong>/)
    assert.equal(await subjectOf(s, s.target, request, await approve(s, consent, jar)), s.mallory)
    const events = (await s.h.store.audit.recent(30)).map((e) => e.type)
    assert.ok(events.includes('login.switch_account'))
  })

  test('prompt=none with a session new to the client: account_selection_required, no code', async () => {
    const jar = new CookieJar()
    await authorizeAs(s, jar, s.clientId, 'alice')
    const request = authorizationRequest(s.h, s.target, s.client.redirectUri)
    const url = new URL(request.url)
    url.searchParams.set('prompt', 'none')
    const response = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } })
    const location = new URL(response.headers.get('location') ?? '')
    assert.equal(location.searchParams.get('error'), 'account_selection_required')
    assert.equal(location.searchParams.get('code'), null)
  })
})

/** One https request trusting the test CA; the answer as a fetch Response (for the cookie jar). */
function httpsFetch(
  url: string,
  ca: string,
  jar: CookieJar,
  form?: Record<string, string>,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const body = form ? new URLSearchParams(form).toString() : undefined
    const req = httpsRequest(
      url,
      {
        ca,
        method: form ? 'POST' : 'GET',
        headers: {
          cookie: jar.header(),
          ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const headers = new Headers()
          for (const [name, value] of Object.entries(res.headers)) {
            for (const v of Array.isArray(value) ? value : [value ?? '']) headers.append(name, v)
          }
          const response = new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers })
          jar.store(response.clone())
          resolve(response)
        })
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

test('https: every cookie the authorization server sets is __Host-, Secure, Path=/, without Domain', async () => {
  const certificates = createTestCertificates()
  const dataDir = (await import('node:fs')).mkdtempSync(
    `${(await import('node:os')).tmpdir()}/gatehouse-https-`,
  )
  const store = await openStore(`sqlite:${dataDir}/as.db`, { dataDir })
  let auth: Awaited<ReturnType<typeof createAuthorizationServer>> | undefined
  const server = createHttpsServer({ cert: certificates.cert, key: certificates.key }, async (req, res) => {
    if (!auth || !(await auth.handle(req, res))) res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  const client = await startClientCallback()
  try {
    auth = await createAuthorizationServer({
      issuer: origin,
      store,
      secret: SECRET,
      resources: [{ url: `${origin}/mcp`, scopes: ['mcp:read'], default: true }],
      interactions: loginAndConsent({ localAccounts: true }),
    })
    await createLocalUser(store, 'alice', PASSWORD)
    const registered = await httpsFetchJson(`${origin}/register`, certificates.ca, {
      redirect_uris: [client.redirectUri],
      token_endpoint_auth_method: 'none',
      scope: 'mcp:read',
    })
    const clientId = registered.client_id as string
    const jar = new CookieJar()
    const setCookies: string[] = []
    const go = async (url: string, form?: Record<string, string>) => {
      const response = await httpsFetch(url, certificates.ca, jar, form)
      setCookies.push(...response.headers.getSetCookie())
      return response
    }
    /** Follows redirects on the server; returns the last page's URL and text. */
    const walk = async (response: Response, url: string) => {
      let current = response
      let at = url
      while (current.status === 303 || current.status === 302) {
        const next = new URL(current.headers.get('location') ?? '', at)
        if (next.origin !== origin) return { at: next.href, html: '' }
        at = next.href
        current = await go(at)
      }
      return { at, html: await current.text() }
    }
    const csrf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? ''
    const authorize = (state: string) =>
      `${origin}/authorize?${new URLSearchParams({
        client_id: clientId,
        response_type: 'code',
        redirect_uri: client.redirectUri,
        scope: 'mcp:read',
        state,
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        code_challenge_method: 'S256',
      })}`
    const login = await walk(await go(authorize('one')), authorize('one'))
    const consent = await walk(
      await go(`${login.at}/login`, { csrf: csrf(login.html), username: 'alice', password: PASSWORD }),
      login.at,
    )
    const done = await walk(
      await go(`${consent.at}/consent`, { csrf: csrf(consent.html), decision: 'approve' }),
      consent.at,
    )
    assert.ok(done.at.startsWith(client.redirectUri), `reached the client: ${done.at}`)
    // A second client from the same browser: the account chooser, then its "Use another account".
    const second = await registerAs(origin, certificates.ca, client.redirectUri)
    const chooserUrl = authorize('two').replace(clientId, second)
    const chooser = await walk(await go(chooserUrl), chooserUrl)
    assert.match(chooser.html, /Use another account/)
    await walk(await go(`${chooser.at}/switch`, { csrf: csrf(chooser.html) }), chooser.at)

    const names = new Set(setCookies.map((c) => c.slice(0, c.indexOf('='))))
    for (const name of ['session', 'interaction', 'resume', 'login'])
      assert.ok(names.has(`__Host-gatehouse-${name}`), `sets __Host-gatehouse-${name}: ${[...names]}`)
    for (const cookie of setCookies) {
      const [pair = '', ...attributes] = cookie.split(';').map((part) => part.trim())
      const lower = attributes.map((a) => a.toLowerCase())
      assert.ok(pair.startsWith('__Host-'), `prefixed: ${cookie}`)
      assert.ok(lower.includes('secure'), `Secure: ${cookie}`)
      assert.deepEqual(
        lower.filter((a) => a.startsWith('path=')),
        ['path=/'],
        `Path=/: ${cookie}`,
      )
      assert.ok(!lower.some((a) => a.startsWith('domain=')), `no Domain: ${cookie}`)
    }
  } finally {
    await client.close()
    server.closeAllConnections()
    server.close()
    await store.close()
  }
})

async function httpsFetchJson(url: string, ca: string, json: Record<string, unknown>) {
  return new Promise<Record<string, unknown>>((resolve, reject) => {
    const req = httpsRequest(
      url,
      { ca, method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())))
      },
    )
    req.on('error', reject)
    req.end(JSON.stringify(json))
  })
}

async function registerAs(origin: string, ca: string, redirectUri: string): Promise<string> {
  const body = await httpsFetchJson(`${origin}/register`, ca, {
    redirect_uris: [redirectUri],
    token_endpoint_auth_method: 'none',
    scope: 'mcp:read',
    client_name: 'Second',
  })
  return body.client_id as string
}

/** The client's next callback, past the browser's favicon requests. */
async function nextCallback(s: Setup): Promise<URL> {
  for (;;) {
    const url = await s.client.next()
    if (url.pathname === '/callback') return url
  }
}

describe('Chromium', () => {
  let browser: Browser
  before(async () => {
    browser = await launchBrowser()
  })
  after(() => browser.close())

  test('a session planted by a page on another port does not authorize the victim as the attacker', async () => {
    const s = await setup()
    let attacker: Awaited<ReturnType<typeof startAttackerPage>> | undefined
    try {
      const malloryJar = new CookieJar()
      await authorizeAs(s, malloryJar, s.target, 'mallory')
      attacker = await startAttackerPage(pick(malloryJar, 'gatehouse-session'))
      const request = authorizationRequest(s.h, s.target, s.client.redirectUri)
      await withContext(browser, async (context) => {
        const page = await context.newPage()
        // The victim signs in as herself for another client.
        const own = authorizationRequest(s.h, s.clientId, s.client.redirectUri)
        await page.goto(own.url)
        await page.getByLabel('Username').fill('alice')
        await page.getByLabel('Password').fill(PASSWORD)
        await page.getByRole('button', { name: 'Sign in' }).click()
        await page.getByRole('button', { name: 'Approve' }).click()
        await page.locator('#done').waitFor()
        await nextCallback(s)
        // She visits the attacker's page, then her app starts an authorization for the target client.
        await page.goto(attacker?.url ?? '')
        const planted = (await context.cookies(s.h.origin)).find((c) => c.name === 'gatehouse-session')
        assert.equal(
          planted?.value,
          pick(malloryJar, 'gatehouse-session')[0]?.split('=')[1],
          'the browser took it',
        )
        await page.goto(request.url)
        await page.getByRole('heading', { name: 'Sign in' }).waitFor()
        assert.ok(!page.url().startsWith(s.client.redirectUri), 'nothing reached the client')
        await page.getByLabel('Username').fill('alice')
        await page.getByLabel('Password').fill(PASSWORD)
        const arrival = nextCallback(s)
        await page.getByRole('button', { name: 'Sign in' }).click()
        await page.getByRole('button', { name: 'Approve' }).click()
        assert.equal(await subjectOf(s, s.target, request, await arrival), s.alice)
      })
    } finally {
      attacker?.server.close()
      await s.client.close()
      await s.h.close()
    }
  })
})
