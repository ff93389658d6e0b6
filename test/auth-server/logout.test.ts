import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { CookieJar, type Harness, register, startAuthServer } from './harness.ts'

const AUTO_SUBMIT = 'document.forms[0].submit()'

interface Step {
  status: number
  location: string | null
  body: string
}

/**
 * A browser opening a logout URL with nobody clicking anything: redirects are followed and a page that submits
 * its form by itself (the provider's form_post page) is submitted. Returns every response on the way.
 */
async function logoutWithoutClicking(url: string): Promise<Step[]> {
  const jar = new CookieJar()
  const seen: Step[] = []
  let next: { url: string; init: RequestInit } | undefined = { url, init: {} }
  while (next && seen.length < 8) {
    const response: Response = await fetch(next.url, {
      ...next.init,
      redirect: 'manual',
      headers: { ...next.init.headers, cookie: jar.header() },
    })
    jar.store(response)
    const location: string | null = response.headers.get('location')
    const body: string = await response.text()
    seen.push({ status: response.status, location, body })
    next = undefined
    if (location && new URL(location, url).origin === new URL(url).origin) {
      next = { url: new URL(location, url).href, init: {} }
    } else if (body.includes(AUTO_SUBMIT)) {
      const action: string = /<form method="post" action="([^"]+)"/.exec(body)?.[1] ?? ''
      const fields = [...body.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\/>/g)]
      next = {
        url: new URL(action, url).href,
        init: {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams(fields.map(([, name, value]) => [name as string, value as string])),
        },
      }
    }
  }
  return seen
}

describe('logout redirects', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer()
    await h.restart({
      clients: [
        {
          client_id: 'site',
          client_secret: 'site-secret-site-secret-site-secret',
          application_type: 'web',
          redirect_uris: ['https://site.example/cb'],
          post_logout_redirect_uris: ['https://site.example/bye'],
        },
      ],
    })
  })
  after(() => h.close())

  const logoutUrl = (clientId: string, redirect: string) =>
    `${h.issuer}/logout?${new URLSearchParams({ client_id: clientId, post_logout_redirect_uri: redirect })}`

  test('a self-registered client cannot send the browser to its post-logout URI', async () => {
    const { response, body } = await register(h, {
      application_type: 'web',
      redirect_uris: ['https://evil.example/cb'],
      post_logout_redirect_uris: ['https://evil.example/bye'],
    })
    assert.equal(response.status, 201, JSON.stringify(body))
    const seen = await logoutWithoutClicking(logoutUrl(body.client_id as string, 'https://evil.example/bye'))
    const last = seen.at(-1) as Step
    assert.equal(last.status, 400)
    assert.match(JSON.parse(last.body).error_description, /declared/)
    for (const step of seen) assert.equal(step.location, null)
  })

  test('a declared client keeps its post-logout redirect', async () => {
    const seen = await logoutWithoutClicking(logoutUrl('site', 'https://site.example/bye'))
    assert.equal(seen.at(-1)?.status, 303)
    assert.equal(seen.at(-1)?.location, 'https://site.example/bye')
  })
})
