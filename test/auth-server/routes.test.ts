import assert from 'node:assert/strict'
import { request } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { type Harness, startAuthServer } from './harness.ts'

/** A request with the path sent byte for byte (fetch would normalize `/./` and friends away). */
function raw(
  h: Harness,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const { port } = new URL(h.origin)
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers },
      (res) => {
        let body = ''
        res.on('data', (chunk: Buffer) => {
          body += chunk
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Spellings of `route` that are not the route itself; oidc-provider's router serves some of them. */
const variants = (route: string) => [
  `${route}/`,
  `/${route}`,
  `${route}//`,
  `${route.toUpperCase()}`,
  `${route.slice(0, 2).toUpperCase()}${route.slice(2)}/`,
  `/%${route.charCodeAt(1).toString(16)}${route.slice(2)}`,
  `/.${route}`,
  `${route}/.`,
  `${route};x`,
  `${route}%2F`,
  `${route}%2f`,
]

const EVIL_WEB_CLIENT = JSON.stringify({
  application_type: 'web',
  redirect_uris: ['http://evil.example/cb'],
  token_endpoint_auth_method: 'none',
})
const JSON_POST = { method: 'POST', headers: { 'content-type': 'application/json' } }
const GUESS = new URLSearchParams({ grant_type: 'authorization_code', code: 'x', client_id: 'nobody' })

for (const issuerPath of ['', '/auth']) {
  describe(`route spellings, issuer ${issuerPath ? 'with a path' : 'at the origin'}`, () => {
    let h: Harness
    before(async () => {
      h = await startAuthServer({
        path: issuerPath,
        overrides: {
          registration: { rateLimit: { limit: 1, windowSeconds: 600 } },
          tokenRateLimit: { limit: 1, windowSeconds: 600 },
        },
      })
    })
    after(() => h.close())
    const prefixes = issuerPath ? [issuerPath, issuerPath.toUpperCase(), `${issuerPath}/`] : ['']

    test('the redirect URI rule applies to /register?x; no other spelling registers a client', async () => {
      const exact = await raw(h, `${issuerPath}/register?x`, { ...JSON_POST, body: EVIL_WEB_CLIENT })
      assert.equal(exact.status, 400, exact.body)
      assert.equal(JSON.parse(exact.body).error, 'invalid_redirect_uri')
      for (const prefix of prefixes) {
        for (const variant of variants('/register')) {
          const answer = await raw(h, `${prefix}${variant}`, { ...JSON_POST, body: EVIL_WEB_CLIENT })
          assert.equal(answer.status, 404, `${prefix}${variant}: ${answer.status} ${answer.body}`)
        }
      }
    })

    test('past the registration and token rate limits, no spelling reaches the provider', async () => {
      const valid = JSON.stringify({ redirect_uris: ['http://127.0.0.1/cb'], client_name: 'first' })
      for (const [route, options] of [
        ['/register', { ...JSON_POST, body: valid }],
        ['/token', { method: 'POST', body: GUESS.toString() }],
      ] as const) {
        const statuses = []
        for (let i = 0; i < 3; i++)
          statuses.push((await raw(h, `${issuerPath}${route}?n=${i}`, options)).status)
        assert.equal(statuses.at(-1), 429, `${route}: ${statuses}`)
        for (const prefix of prefixes) {
          for (const variant of variants(route)) {
            const answer = await raw(h, `${prefix}${variant}`, options)
            assert.ok(
              answer.status === 404 || answer.status === 429,
              `${prefix}${variant}: ${answer.status} ${answer.body}`,
            )
          }
        }
      }
    })

    test('every URL in the metadata derives from the issuer, whatever Host and X-Forwarded-* say', async () => {
      for (const headers of [
        {},
        { host: 'evil.example' },
        { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
        { host: 'evil.example:8443', forwarded: 'host=evil.example;proto=https' },
      ] as Record<string, string>[]) {
        for (const path of [
          `${issuerPath}/.well-known/openid-configuration`,
          `/.well-known/oauth-authorization-server${issuerPath}`,
        ]) {
          const answer = await raw(h, path, { headers })
          assert.equal(answer.status, 200, `${path} ${JSON.stringify(headers)}: ${answer.body}`)
          const urls = publishedUrls(JSON.parse(answer.body))
          assert.ok(urls.length >= 8, urls.join(' '))
          for (const url of urls) assert.ok(url.startsWith(`${h.issuer}/`) || url === h.issuer, url)
        }
      }
    })
  })
}

function publishedUrls(metadata: Record<string, unknown>): string[] {
  return Object.values(metadata).filter(
    (value): value is string => typeof value === 'string' && /^https?:/.test(value),
  )
}
