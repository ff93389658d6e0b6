import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loginAndConsent } from '../../src/auth-server/index.ts'
import { authorizationRequest, startAuthorization, startClientCallback } from '../support/login-flow.ts'
import { register, registerPublicClient, startAuthServer } from './harness.ts'

const guess = (issuer: string, forwardedFor: string) =>
  fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'x-forwarded-for': forwardedFor },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x', client_id: 'nobody' }),
  })

const registerFrom = async (h: Awaited<ReturnType<typeof startAuthServer>>, forwardedFor: string) =>
  (
    await register(
      h,
      { redirect_uris: ['http://127.0.0.1/cb'], client_name: forwardedFor },
      { 'x-forwarded-for': forwardedFor },
    )
  ).response.status

const LIMITS = {
  registration: { rateLimit: { limit: 2, windowSeconds: 600 } },
  tokenRateLimit: { limit: 2, windowSeconds: 600 },
}

test('behind the trusted proxy, the rate limits count the entry the proxy appended, not what the client wrote', async () => {
  const h = await startAuthServer({ overrides: { ...LIMITS, proxy: true } })
  try {
    // The client rotates the leftmost entry; the proxy appends the real peer, 203.0.113.7, every time.
    const registrations = []
    for (let i = 0; i < 3; i++) registrations.push(await registerFrom(h, `10.0.0.${i}, 203.0.113.7`))
    assert.deepEqual(registrations, [201, 201, 429])
    assert.equal(await registerFrom(h, '10.0.0.9, 198.51.100.1'), 201)

    const tokens = []
    for (let i = 0; i < 3; i++) tokens.push((await guess(h.issuer, `10.0.0.${i}, 203.0.113.7`)).status)
    assert.deepEqual(tokens, [401, 401, 429])
    assert.equal((await guess(h.issuer, '198.51.100.1')).status, 401)
  } finally {
    await h.close()
  }
})

test('without the trusted proxy, X-Forwarded-For is ignored: the socket address is counted', async () => {
  const h = await startAuthServer({ overrides: LIMITS })
  try {
    const registrations = []
    for (let i = 0; i < 3; i++) registrations.push(await registerFrom(h, `203.0.113.${i}`))
    assert.deepEqual(registrations, [201, 201, 429])
    const tokens = []
    for (let i = 0; i < 3; i++) tokens.push((await guess(h.issuer, `203.0.113.${i}`)).status)
    assert.deepEqual(tokens, [401, 401, 429])
  } finally {
    await h.close()
  }
})

test('sign-in without the trusted proxy counts the socket address too (the provider itself trusts X-Forwarded-*)', async () => {
  const h = await startAuthServer({
    overrides: {
      interactions: loginAndConsent({ rateLimit: { perAddress: { limit: 2, windowSeconds: 60 } } }),
    },
  })
  const client = await startClientCallback()
  try {
    const clientId = await registerPublicClient(h, { redirect_uris: [client.redirectUri] })
    const { jar, page } = await startAuthorization(authorizationRequest(h, clientId, client.redirectUri))
    const statuses = []
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${page.url}/login`, {
        method: 'POST',
        headers: {
          cookie: jar.header(),
          'content-type': 'application/x-www-form-urlencoded',
          'x-forwarded-for': `203.0.113.${i}`,
        },
        body: new URLSearchParams({ csrf: page.csrf, username: `u${i}`, password: 'wrong password wrong' }),
      })
      statuses.push(response.status)
    }
    assert.deepEqual(statuses, [401, 401, 429])
  } finally {
    await client.close()
    await h.close()
  }
})
