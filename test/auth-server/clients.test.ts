import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { createServer } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose'
import { registeredClientId } from '../../src/auth-server/registration.ts'
import { createGuard } from '../../src/guard/index.ts'
import {
  authorize,
  authorizeUrl,
  basic,
  browse,
  type Harness,
  pkce,
  register,
  startAuthServer,
  token,
} from './harness.ts'

const MCP_CLIENT = {
  client_name: 'Idempotent MCP client',
  redirect_uris: ['http://127.0.0.1/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
}

describe('dynamic client registration', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer({
      overrides: {
        registration: { rateLimit: { limit: 20, windowSeconds: 3600 } },
        allowedOrigins: ['https://app.example'],
      },
    })
  })
  after(() => h.close())

  test('an MCP body registers a public native client with no secret, with CORS for browser clients', async () => {
    const { response, body } = await register(
      h,
      { ...MCP_CLIENT, client_name: 'fresh' },
      { origin: 'https://app.example' },
    )
    assert.equal(response.status, 201)
    assert.equal(response.headers.get('access-control-allow-origin'), '*')
    assert.equal(body.token_endpoint_auth_method, 'none')
    assert.equal(body.application_type, 'native')
    assert.equal(body.client_secret, undefined)
    assert.equal(body.registration_access_token, undefined)
    assert.ok(!(body.client_id as string).startsWith('https://'))
    const preflight = await fetch(`${h.issuer}/register`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
    })
    assert.equal(preflight.status, 204)
    assert.equal(preflight.headers.get('access-control-allow-origin'), '*')
  })

  test('a client_id is 128 random bits of base64url that never starts with "-" (it would read as a CLI option)', async () => {
    const { response, body } = await register(h, { ...MCP_CLIENT, client_name: 'id shape' })
    assert.equal(response.status, 201)
    assert.match(body.client_id as string, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/)
    // One in 64 would start with "-" without the redraw: 10,000 draws never passing by chance.
    const ids = Array.from({ length: 10_000 }, registeredClientId)
    assert.equal(ids.filter((id) => id.startsWith('-')).length, 0)
    assert.equal(new Set(ids).size, ids.length)
  })

  test('a registration from a browser origin not in allowedOrigins gets 403 (cross-site, DNS rebinding)', async () => {
    const { response, body } = await register(
      h,
      { ...MCP_CLIENT, client_name: 'cross-site' },
      { origin: 'https://evil.example' },
    )
    assert.equal(response.status, 403)
    assert.equal(body.error, 'invalid_request')
    assert.equal(body.client_id, undefined)
  })

  test('a body with no token_endpoint_auth_method gets a public client and no useless secret', async () => {
    const { redirect_uris } = MCP_CLIENT
    const { response, body } = await register(h, { client_name: 'legacy', redirect_uris })
    assert.equal(response.status, 201)
    assert.equal(body.token_endpoint_auth_method, 'none')
    assert.equal(body.client_secret, undefined)
  })

  test('an identical registration returns the same client, whatever the key order', async () => {
    const first = await register(h, MCP_CLIENT)
    const reordered = Object.fromEntries(Object.entries(MCP_CLIENT).reverse())
    const second = await register(h, reordered)
    assert.equal(second.response.status, 201)
    assert.equal(second.body.client_id, first.body.client_id)
    assert.equal(second.body.client_id_issued_at, first.body.client_id_issued_at)
    const different = await register(h, { ...MCP_CLIENT, client_name: 'another' })
    assert.notEqual(different.body.client_id, first.body.client_id)
  })

  test('confidential registrations are never replayed: each gets its own client and secret', async () => {
    const body = {
      ...MCP_CLIENT,
      token_endpoint_auth_method: 'client_secret_basic',
      application_type: 'web',
      redirect_uris: ['https://c.example/cb'],
    }
    const first = await register(h, body)
    const second = await register(h, body)
    assert.equal(first.response.status, 201)
    assert.equal(typeof first.body.client_secret, 'string')
    assert.notEqual(second.body.client_id, first.body.client_id)
  })

  test('a registration over 56 KiB gets an OAuth JSON error, not a text/plain page', async () => {
    const { response, body } = await register(h, { ...MCP_CLIENT, client_name: 'x'.repeat(57 * 1024) })
    assert.equal(response.status, 413)
    assert.equal(response.headers.get('content-type'), 'application/json; charset=utf-8')
    assert.equal(response.headers.get('cache-control'), 'no-store')
    assert.deepEqual(body, {
      error: 'invalid_request',
      error_description: 'the registration request is larger than 56 KiB',
    })
  })

  /** A code and tokens for `scope`: what a client does when a tool's 403 asks for more (step-up). */
  async function stepUp(clientId: string, scope: string) {
    const { code, redirectUri, verifier } = await authorize(h, clientId, { scope })
    return token(h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      resource: h.resource,
    })
  }

  test("a registration's scope is no limit: the client later gets a wider scope (step-up)", async () => {
    const { response, body } = await register(h, { ...MCP_CLIENT, client_name: 'narrow', scope: 'mcp:read' })
    assert.equal(response.status, 201)
    assert.equal(body.scope, undefined)
    const wider = await stepUp(body.client_id as string, 'mcp:read mcp:write')
    assert.equal(wider.response.status, 200)
    assert.equal(wider.body.scope, 'mcp:read mcp:write')
  })

  test('a client stored with a scope before that rule is not limited by it either', async () => {
    const clientId = randomUUID()
    await h.store
      .oidcAdapter('Client')
      .upsert(
        clientId,
        { ...MCP_CLIENT, client_id: clientId, application_type: 'native', scope: 'mcp:read' },
        3600,
      )
    const wider = await stepUp(clientId, 'mcp:read mcp:write')
    assert.equal(wider.response.status, 200)
    assert.equal(wider.body.scope, 'mcp:read mcp:write')
  })

  const refused: [string, string][] = [
    ['http on a public host', 'http://client.example/callback'],
    ['a fragment', 'https://client.example/callback#x'],
    ['userinfo', 'https://client.example@evil.example/cb'],
    ['javascript:', 'javascript:alert(1)'],
    ['data:', 'data:text/html,hi'],
  ]
  for (const [name, uri] of refused) {
    test(`a redirect URI with ${name} is refused with invalid_redirect_uri`, async () => {
      const { response, body } = await register(h, { ...MCP_CLIENT, redirect_uris: [uri] })
      assert.equal(response.status, 400)
      assert.equal(body.error, 'invalid_redirect_uri')
    })
  }
})

test('registrations beyond the rate limit get 429 with Retry-After', async () => {
  const h = await startAuthServer({
    overrides: { registration: { rateLimit: { limit: 2, windowSeconds: 600 } } },
  })
  try {
    const statuses = []
    for (let i = 0; i < 3; i++)
      statuses.push((await register(h, { ...MCP_CLIENT, client_name: `n${i}` })).response)
    assert.deepEqual(
      statuses.map((r) => r.status),
      [201, 201, 429],
    )
    assert.equal(statuses[2]?.headers.get('retry-after'), '600')
    const { body } = await register(h, MCP_CLIENT)
    assert.equal(body.error, 'too_many_requests')
  } finally {
    await h.close()
  }
})

test('token requests beyond the rate limit get 429 with Retry-After (a failed one counted after its answer)', async () => {
  const h = await startAuthServer({ overrides: { tokenRateLimit: { limit: 3, windowSeconds: 300 } } })
  try {
    const guess = () =>
      fetch(`${h.issuer}/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'authorization_code', code: 'guessed', client_id: 'nobody' }),
      })
    const statuses = []
    for (let i = 0; i < 4; i++) statuses.push(await guess())
    assert.deepEqual(
      statuses.map((r) => r.status),
      [401, 401, 401, 429],
    )
    const refused = statuses[3] as Response
    assert.equal(refused.headers.get('retry-after'), '300')
    assert.equal(((await refused.json()) as { error: string }).error, 'too_many_requests')
  } finally {
    await h.close()
  }
})

describe('client ID metadata documents', () => {
  let h: Harness
  let bytesReceived = 0
  const listener = createServer((socket) => {
    socket.on('data', (chunk) => {
      bytesReceived += chunk.length
    })
    socket.on('error', () => {})
  })
  before(async () => {
    h = await startAuthServer()
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  })
  after(async () => {
    listener.close()
    await h.close()
  })

  const tryClient = (clientId: string) =>
    browse(
      authorizeUrl(h, {
        client_id: clientId,
        response_type: 'code',
        redirect_uri: 'https://client.example/cb',
        resource: h.resource,
        code_challenge: pkce().challenge,
        code_challenge_method: 'S256',
      }),
    )

  // A listener on the target port counts what it receives: not even a TLS ClientHello may be sent. (The
  // provider's guard checks the peer address once TCP has connected, then destroys the socket.)
  for (const host of ['127.0.0.1', 'localhost']) {
    test(`an https client_id on ${host} is refused without a fetch`, async () => {
      const port = (listener.address() as AddressInfo).port
      const response = await tryClient(`https://${host}:${port}/client-${randomUUID()}.json`)
      assert.equal(response.status, 400)
      assert.equal(response.headers.get('location'), null)
      assert.match(await response.text(), /invalid_client/)
      assert.equal(bytesReceived, 0)
    })
  }

  test('a non-https URL client_id is an unknown client, never fetched', async () => {
    const port = (listener.address() as AddressInfo).port
    const response = await tryClient(`http://127.0.0.1:${port}/client.json`)
    assert.equal(response.status, 400)
    assert.match(await response.text(), /invalid_client/)
    assert.equal(bytesReceived, 0)
  })
})

describe('client credentials', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer({ path: '/auth' })
  })
  after(() => h.close())
  const machine = basic('machine', 'machine-secret-machine-secret')

  test('with resource: a JWT for that audience that our guard accepts', async () => {
    const guard = await createGuard({
      resource: h.other,
      authorizationServers: [{ issuer: h.issuer }],
      logger: { warn: () => {}, info: () => {} },
    })
    const { response, body } = await token(
      h,
      { grant_type: 'client_credentials', resource: h.other, scope: 'other:read' },
      machine,
    )
    assert.equal(response.status, 200)
    const verified = await guard.verifyToken(body.access_token as string)
    assert.deepEqual(verified.audience, [h.other])
    assert.equal(verified.subject, 'machine')
    assert.deepEqual(verified.scopes, ['other:read'])
  })

  test('an unknown resource is invalid_target; a wrong secret is invalid_client', async () => {
    const unknown = await token(
      h,
      { grant_type: 'client_credentials', resource: 'https://x.example/mcp' },
      machine,
    )
    assert.equal(unknown.body.error, 'invalid_target')
    const wrong = await token(
      h,
      { grant_type: 'client_credentials', resource: h.resource },
      basic('machine', 'nope'),
    )
    assert.equal(wrong.body.error, 'invalid_client')
  })

  test('with a DPoP proof the token is DPoP-bound to the key', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256')
    const jwk = await exportJWK(publicKey)
    const proof = await new SignJWT({ htm: 'POST', htu: `${h.issuer}/token`, jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
      .setIssuedAt()
      .sign(privateKey)
    const { response, body } = await token(
      h,
      { grant_type: 'client_credentials', resource: h.resource },
      { ...machine, dpop: proof },
    )
    assert.equal(response.status, 200)
    assert.equal(body.token_type, 'DPoP')
    const claims = JSON.parse(
      Buffer.from((body.access_token as string).split('.')[1] as string, 'base64url').toString(),
    )
    assert.equal(claims.cnf.jkt, await calculateJwkThumbprint(jwk))
  })
})
