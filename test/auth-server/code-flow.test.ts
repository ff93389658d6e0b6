import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createGuard, type Guard, GuardError } from '../../src/guard/index.ts'
import {
  authorize,
  authorizeUrl,
  browse,
  connect,
  type Harness,
  pkce,
  randomLoopbackCallback,
  registerPublicClient,
  startAuthServer,
  token,
} from './harness.ts'

const decodeHeader = (jwt: string) =>
  JSON.parse(Buffer.from(jwt.split('.')[0] as string, 'base64url').toString())

describe('authorization code with PKCE and resource', () => {
  let h: Harness
  let guard: Guard
  let clientId: string
  before(async () => {
    h = await startAuthServer({ path: '/oauth' })
    guard = await createGuard({
      resource: h.resource,
      authorizationServers: [{ issuer: h.issuer }],
      logger: { warn: () => {}, info: () => {} },
    })
    clientId = await registerPublicClient(h)
  })
  after(() => h.close())

  const redeem = (code: string, redirectUri: string, verifier: string, extra: Record<string, string> = {}) =>
    token(h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      resource: h.resource,
      ...extra,
    })

  test('a DCR client on a random loopback port gets an at+jwt for the resource that our guard accepts', async () => {
    const { code, redirectUri, verifier, location, state } = await authorize(h, clientId, {
      scope: 'mcp:read',
    })
    assert.equal(location.origin + location.pathname, redirectUri)
    assert.equal(location.searchParams.get('iss'), h.issuer)
    assert.equal(location.searchParams.get('state'), state)
    const { response, body } = await redeem(code, redirectUri, verifier)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('cache-control'), 'no-store')
    assert.equal(body.token_type, 'Bearer')
    assert.equal(body.expires_in, 600)
    assert.equal(typeof body.refresh_token, 'string')
    assert.equal(decodeHeader(body.access_token as string).typ, 'at+jwt')
    const verified = await guard.verifyToken(body.access_token as string)
    assert.deepEqual(verified.audience, [h.resource])
    assert.deepEqual(verified.scopes, ['mcp:read'])
    assert.equal(verified.clientId, clientId)
    assert.equal(verified.issuer, h.issuer)
    assert.equal(typeof verified.subject, 'string')
  })

  test('a legacy client that sends no resource gets the default resource as audience', async () => {
    const { code, redirectUri, verifier } = await authorize(h, clientId, { resource: '' })
    const { response, body } = await redeem(code, redirectUri, verifier, { resource: '' })
    assert.equal(response.status, 200, JSON.stringify(body))
    assert.deepEqual((await guard.verifyToken(body.access_token as string)).audience, [h.resource])
  })

  test('a token for another resource is refused by the guard of this one', async () => {
    const { access_token } = await connect(h, clientId, h.other)
    await assert.rejects(guard.verifyToken(access_token as string), (error: GuardError) => {
      assert.ok(error instanceof GuardError)
      assert.equal(error.code, 'audience_mismatch')
      return true
    })
  })

  test('an unknown resource is refused with invalid_target, iss and state in the redirect', async () => {
    for (const resource of [`${h.origin}/unknown`, `${h.resource}/`, 'relative/mcp', `${h.resource}#frag`]) {
      const redirectUri = randomLoopbackCallback()
      const challenge = pkce()
      const response = await browse(
        authorizeUrl(h, {
          client_id: clientId,
          response_type: 'code',
          redirect_uri: redirectUri,
          resource,
          state: 'xyz',
          code_challenge: challenge.challenge,
          code_challenge_method: 'S256',
        }),
      )
      const location = new URL(response.headers.get('location') as string)
      assert.equal(location.origin + location.pathname, redirectUri, resource)
      assert.equal(location.searchParams.get('error'), 'invalid_target', resource)
      assert.equal(location.searchParams.get('iss'), h.issuer, resource)
      assert.equal(location.searchParams.get('state'), 'xyz', resource)
    }
  })

  test('a code redeemed twice: invalid_grant, and the refresh token of the first redemption is revoked', async () => {
    const { code, redirectUri, verifier } = await authorize(h, clientId)
    const first = await redeem(code, redirectUri, verifier)
    assert.equal(first.response.status, 200)
    const second = await redeem(code, redirectUri, verifier)
    assert.equal(second.response.status, 400)
    assert.equal(second.body.error, 'invalid_grant')
    const refresh = await token(h, {
      grant_type: 'refresh_token',
      refresh_token: first.body.refresh_token as string,
      client_id: clientId,
    })
    assert.equal(refresh.body.error, 'invalid_grant')
  })

  test('concurrent redemptions of one code: exactly one gets tokens', async () => {
    const { code, redirectUri, verifier } = await authorize(h, clientId)
    const results = await Promise.all(Array.from({ length: 6 }, () => redeem(code, redirectUri, verifier)))
    assert.deepEqual(results.map((r) => r.response.status).sort(), [200, 400, 400, 400, 400, 400])
    for (const r of results.filter((r) => r.response.status === 400))
      assert.equal(r.body.error, 'invalid_grant')
  })

  test('a client without refresh tokens: its code is consumed at redemption, a second one is invalid_grant', async () => {
    const codeOnly = await registerPublicClient(h, { grant_types: ['authorization_code'] })
    const { code, redirectUri, verifier } = await authorize(h, codeOnly)
    const params = {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: codeOnly,
      resource: h.resource,
    }
    const first = await token(h, params)
    assert.equal(first.response.status, 200)
    assert.equal(first.body.refresh_token, undefined)
    const second = await token(h, params)
    assert.equal(second.body.error, 'invalid_grant')
  })

  describe('PKCE', () => {
    const authorizationCases: [string, Record<string, string | undefined>][] = [
      ['no code_challenge', { code_challenge: undefined, code_challenge_method: undefined }],
      ['method plain', { code_challenge_method: 'plain' }],
      ['no method', { code_challenge_method: undefined }],
      ['challenge too short', { code_challenge: 'a'.repeat(42) }],
    ]
    for (const [name, change] of authorizationCases) {
      test(`authorization with ${name} is refused with invalid_request and iss`, async () => {
        const redirectUri = randomLoopbackCallback()
        const response = await browse(
          authorizeUrl(h, {
            client_id: clientId,
            response_type: 'code',
            redirect_uri: redirectUri,
            resource: h.resource,
            state: 's1',
            code_challenge: pkce().challenge,
            code_challenge_method: 'S256',
            ...change,
          }),
        )
        const location = new URL(response.headers.get('location') as string)
        assert.equal(location.origin + location.pathname, redirectUri)
        assert.equal(location.searchParams.get('error'), 'invalid_request')
        assert.equal(location.searchParams.get('code'), null)
        assert.equal(location.searchParams.get('iss'), h.issuer)
        assert.equal(location.searchParams.get('state'), 's1')
      })
    }

    const tokenCases: [string, (verifier: string) => Record<string, string>, string][] = [
      ['a wrong verifier', () => ({ code_verifier: pkce().verifier }), 'invalid_grant'],
      ['a verifier of 42 characters', (v) => ({ code_verifier: v.slice(0, 42) }), 'invalid_request'],
      [
        'a verifier with a forbidden character',
        (v) => ({ code_verifier: `${v.slice(0, 42)}+` }),
        'invalid_request',
      ],
      ['no verifier', () => ({ code_verifier: '' }), 'invalid_grant'],
    ]
    // Someone holding only the code cannot burn it: the client with the right verifier still redeems it.
    for (const [name, change, error] of tokenCases) {
      test(`redemption with ${name}: ${error}, no tokens`, async () => {
        const { code, redirectUri, verifier } = await authorize(h, clientId)
        const bad = await redeem(code, redirectUri, verifier, change(verifier))
        assert.equal(bad.response.status, 400)
        assert.equal(bad.body.error, error)
        assert.equal(bad.body.access_token, undefined)
        const rightful = await redeem(code, redirectUri, verifier)
        assert.equal(rightful.response.status, 200)
      })
    }
  })

  describe('redirect URI', () => {
    let webClient: string
    before(async () => {
      webClient = await registerPublicClient(h, {
        application_type: 'web',
        redirect_uris: ['https://client.example/cb'],
      })
    })

    const variations: [string, 'native' | 'web', string][] = [
      ['trailing slash', 'native', 'http://127.0.0.1/callback/'],
      ['path case', 'native', 'http://127.0.0.1/Callback'],
      ['another path', 'native', 'http://127.0.0.1/other'],
      ['dot segments', 'native', 'http://127.0.0.1/x/../callback'],
      ['extra query', 'native', 'http://127.0.0.1/callback?x=1'],
      ['fragment', 'native', 'http://127.0.0.1/callback#x'],
      ['another loopback name', 'native', 'http://localhost/callback'],
      ['http on a non-loopback host', 'native', 'http://evil.example/callback'],
      ['https instead of http', 'native', 'https://127.0.0.1/callback'],
      ['userinfo trick', 'web', 'https://client.example@evil.example/cb'],
      ['suffix host', 'web', 'https://client.example.evil.example/cb'],
      ['another port', 'web', 'https://client.example:8443/cb'],
      ['http instead of https', 'web', 'http://client.example/cb'],
      ['percent-encoded path', 'web', 'https://client.example/%63b'],
    ]
    for (const [name, kind, redirectUri] of variations) {
      test(`${name} (${redirectUri}): an error page, no redirect`, async () => {
        const response = await browse(
          authorizeUrl(h, {
            client_id: kind === 'web' ? webClient : clientId,
            response_type: 'code',
            redirect_uri: redirectUri,
            resource: h.resource,
            state: 's',
            code_challenge: pkce().challenge,
            code_challenge_method: 'S256',
          }),
        )
        assert.equal(response.status, 400)
        assert.equal(response.headers.get('location'), null)
        assert.match(
          await response.text(),
          /redirect_uri did not match any of the client's registered redirect_uris|invalid_redirect_uri/,
        )
      })
    }

    test('the registered web redirect works exactly as registered', async () => {
      const { location } = await authorize(h, webClient, { redirectUri: 'https://client.example/cb' })
      assert.equal(location.origin + location.pathname, 'https://client.example/cb')
    })
  })
})
