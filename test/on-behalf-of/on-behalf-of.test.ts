import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { decodeJwt } from 'jose'
import { createGuard } from '../../src/guard/index.ts'
import { createOnBehalfOf, OnBehalfOfError, type OnBehalfOfOptions } from '../../src/on-behalf-of/index.ts'
import { type ExchangeIdp, startExchangeIdp } from '../support/exchange-idp.ts'

const MCP = 'https://mcp.gatehouse.test/mcp'
const ORDERS = 'https://orders.internal.example/api'
const BILLING = 'https://billing.internal.example/api'
const SCOPES = ['mcp', 'orders:read', 'orders:write']
const BACKEND = { id: 'backend', secret: 'backend-secret-backend-secret-0123' }
const POSTER = {
  id: 'poster',
  secret: 'poster-secret-poster-secret-01234',
  auth: 'client_secret_post' as const,
}
const signer = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const SIGNER = {
  id: 'signer',
  auth: 'private_key_jwt' as const,
  jwks: { keys: [{ ...signer.publicKey.export({ format: 'jwk' }), kid: 'signer-1', alg: 'ES256' }] },
}

/** The exchanged token as the API checks it: its own guard, trusting the provider, for its own audience. */
async function verifiedAt(api: string, issuer: string, token: string) {
  const guard = await createGuard({ resource: api, authorizationServers: [{ issuer }] })
  return guard.check(new Request(api, { headers: { authorization: `Bearer ${token}` } }))
}

async function refusedWith(promise: Promise<unknown>, code: string, providerError?: string) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof OnBehalfOfError, String(error))
    assert.equal(error.code, code, error.detail)
    if (providerError) assert.equal(error.providerError, providerError)
    assert.doesNotMatch(error.message, /eyJ/, 'no token in the message')
    return true
  })
}

describe('on-behalf-of: tokens for an API for the current user, exchanged at an external provider', () => {
  let idp: ExchangeIdp
  let alice: string
  const exchanger = (options: Partial<OnBehalfOfOptions> = {}) =>
    createOnBehalfOf({ issuer: idp.issuer, clientId: BACKEND.id, clientSecret: BACKEND.secret, ...options })

  before(async () => {
    idp = await startExchangeIdp({
      mcp: { resource: MCP, scopes: SCOPES },
      clients: [BACKEND, POSTER, SIGNER],
      rules: [
        { client: BACKEND.id, audience: ORDERS, scopes: ['orders:read', 'orders:write'] },
        { client: POSTER.id, audience: ORDERS, scopes: ['orders:read'] },
        { client: SIGNER.id, audience: ORDERS, scopes: ['orders:read'] },
      ],
    })
    alice = await idp.signIn('alice', 'openid mcp orders:read orders:write')
  })
  after(() => idp.close())

  test('RFC 8693: a narrower JWT for the API, the user as sub, the client in act; the API verifies it', async () => {
    const token = await exchanger().tokenFor({ token: alice }, { audience: ORDERS, scope: 'orders:read' })
    assert.equal(token.scope, 'orders:read')
    const result = await verifiedAt(ORDERS, idp.issuer, token.accessToken)
    assert.ok(result.ok, JSON.stringify(!result.ok && result.error.detail))
    assert.equal(result.token.subject, 'alice')
    assert.deepEqual(result.token.audience, [ORDERS])
    assert.deepEqual(result.token.scopes, ['orders:read'])
    assert.deepEqual(result.token.claims.act, { sub: BACKEND.id })
    // Issued for the orders API, it is refused by the MCP server and by another API.
    for (const other of [MCP, BILLING]) {
      const elsewhere = await verifiedAt(other, idp.issuer, token.accessToken)
      assert.equal(!elsewhere.ok && elsewhere.error.code, 'audience_mismatch')
    }
  })

  test('without scope: every scope the rule allows that the user token holds, and no more', async () => {
    const bob = await idp.signIn('bob', 'openid mcp orders:read')
    const token = await exchanger().tokenFor({ token: bob }, { audience: ORDERS })
    assert.equal(decodeJwt(token.accessToken).scope, 'orders:read')
  })

  test('a scope the user token lacks, or an audience no rule allows, is exchange_refused; nothing is kept', async () => {
    const bob = await idp.signIn('bob', 'openid mcp orders:read')
    const client = exchanger()
    await refusedWith(
      client.tokenFor({ token: bob }, { audience: ORDERS, scope: 'orders:write' }),
      'exchange_refused',
      'invalid_scope',
    )
    await refusedWith(
      client.tokenFor({ token: alice }, { audience: BILLING }),
      'exchange_refused',
      'invalid_target',
    )
    const before = idp.exchanges.length
    await refusedWith(client.tokenFor({ token: alice }, { audience: BILLING }), 'exchange_refused')
    assert.equal(idp.exchanges.length, before + 1, 'a refusal is asked again, not remembered')
  })

  test('cache: N calls for one user token and audience reach the provider once; another audience or token is another exchange', async () => {
    const carol = await idp.signIn('carol', 'openid mcp orders:read')
    const client = exchanger()
    const before = idp.exchanges.length
    const tokens = new Set<string>()
    for (let i = 0; i < 10; i++)
      tokens.add((await client.tokenFor({ token: carol }, { audience: ORDERS })).accessToken)
    assert.equal(tokens.size, 1)
    assert.equal(idp.exchanges.length - before, 1)
    const again = await idp.signIn('carol', 'openid mcp orders:read')
    await client.tokenFor({ token: again }, { audience: ORDERS })
    assert.equal(idp.exchanges.length - before, 2, 'the cache is per user token')
  })

  test('single flight: N concurrent calls while the provider is slow make one exchange, all get its token', async () => {
    const dave = await idp.signIn('dave', 'openid mcp orders:read')
    const client = exchanger()
    await client.check()
    const before = idp.exchanges.length
    const release = idp.hold()
    const calls = Array.from({ length: 20 }, () => client.tokenFor({ token: dave }, { audience: ORDERS }))
    release()
    const tokens = await Promise.all(calls)
    assert.equal(new Set(tokens.map((t) => t.accessToken)).size, 1)
    assert.equal(idp.exchanges.length - before, 1)
  })

  test('a bounded cache: the oldest token goes when it is full', async () => {
    const client = exchanger({ cacheSize: 1 })
    const erin = await idp.signIn('erin', 'openid mcp orders:read')
    const frank = await idp.signIn('frank', 'openid mcp orders:read')
    const before = idp.exchanges.length
    await client.tokenFor({ token: erin }, { audience: ORDERS })
    await client.tokenFor({ token: frank }, { audience: ORDERS })
    await client.tokenFor({ token: erin }, { audience: ORDERS })
    assert.equal(idp.exchanges.length - before, 3)
  })

  test('nothing is kept past the user token’s own expiry: a token in its last second is exchanged each time', async () => {
    const gina = await idp.signIn('gina', 'openid mcp orders:read')
    const client = exchanger()
    const before = idp.exchanges.length
    const expiresAt = Math.floor(Date.now() / 1000)
    await client.tokenFor({ token: gina, expiresAt }, { audience: ORDERS })
    await client.tokenFor({ token: gina, expiresAt }, { audience: ORDERS })
    assert.equal(idp.exchanges.length - before, 2)
  })

  test('a revoked user token is subject_rejected (invalid_grant), even with a fresh client', async () => {
    const hank = await idp.signIn('hank', 'openid mcp orders:read')
    idp.revokeUser('hank')
    await refusedWith(
      exchanger().tokenFor({ token: hank }, { audience: ORDERS }),
      'subject_rejected',
      'invalid_grant',
    )
  })

  test('replay: an exchanged token is not a subject token (subject_rejected), nor is a forged one', async () => {
    const client = exchanger()
    const exchanged = await client.tokenFor({ token: alice }, { audience: ORDERS, scope: 'orders:read' })
    await refusedWith(
      client.tokenFor({ token: exchanged.accessToken }, { audience: ORDERS }),
      'subject_rejected',
      'invalid_request',
    )
    const [header, , signature] = alice.split('.')
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...decodeJwt(alice), sub: 'admin' })).toString('base64url')}.${signature}`
    await refusedWith(
      client.tokenFor({ token: forged }, { audience: ORDERS }),
      'subject_rejected',
      'invalid_request',
    )
  })

  test('client_secret_post and private_key_jwt authenticate too; a wrong secret is exchange_failed', async () => {
    const posted = await exchanger({
      clientId: POSTER.id,
      clientSecret: POSTER.secret,
      method: 'client_secret_post',
    }).tokenFor({ token: alice }, { audience: ORDERS })
    assert.deepEqual(decodeJwt(posted.accessToken).act, { sub: POSTER.id })
    const signed = await createOnBehalfOf({
      tokenEndpoint: `${idp.issuer}/token`,
      clientId: SIGNER.id,
      privateKey: signer.privateKey,
      keyId: 'signer-1',
    }).tokenFor({ token: alice }, { audience: ORDERS })
    assert.deepEqual(decodeJwt(signed.accessToken).act, { sub: SIGNER.id })
    await refusedWith(
      exchanger({ clientSecret: 'not-the-secret' }).tokenFor({ token: alice }, { audience: ORDERS }),
      'exchange_failed',
      'invalid_client',
    )
  })

  test("Entra's on-behalf-of profile: the jwt-bearer grant, the API named by <audience>/.default", async () => {
    const token = await exchanger({ profile: 'entra_obo' }).tokenFor(
      { token: alice },
      { scope: `${ORDERS}/.default` },
    )
    const claims = decodeJwt(token.accessToken)
    assert.equal(claims.aud, ORDERS)
    assert.equal(claims.sub, 'alice')
    assert.equal(idp.exchanges.at(-1)?.grant, 'on-behalf-of')
  })

  test('misuse is a TypeError at once: no endpoint, no audience, no scope for entra_obo', async () => {
    assert.throws(() => createOnBehalfOf({ clientId: 'x', clientSecret: 'y' }), TypeError)
    assert.throws(() => createOnBehalfOf({ issuer: idp.issuer, clientId: 'x' }), TypeError)
    await assert.rejects(exchanger().tokenFor({ token: alice }, {}), TypeError)
    await assert.rejects(
      exchanger({ profile: 'entra_obo' }).tokenFor({ token: alice }, { audience: ORDERS }),
      TypeError,
    )
  })
})

describe('on-behalf-of: expired user tokens and a provider that is down', () => {
  test('an expired user token is subject_rejected by the provider', async () => {
    const idp = await startExchangeIdp({
      mcp: { resource: MCP, scopes: SCOPES },
      clients: [BACKEND],
      rules: [{ client: BACKEND.id, audience: ORDERS, scopes: ['orders:read'] }],
      accessTokenTtl: 1,
    })
    try {
      const token = await idp.signIn('ivy', 'openid mcp orders:read')
      await sleep(2100)
      const client = createOnBehalfOf({
        issuer: idp.issuer,
        clientId: BACKEND.id,
        clientSecret: BACKEND.secret,
      })
      await refusedWith(
        client.tokenFor({ token }, { audience: ORDERS }),
        'subject_rejected',
        'invalid_request',
      )
    } finally {
      await idp.close()
    }
  })

  test('a provider that is down: provider_unavailable at the check and at the exchange', async () => {
    const idp = await startExchangeIdp({
      mcp: { resource: MCP, scopes: SCOPES },
      clients: [BACKEND],
      rules: [],
    })
    const token = await idp.signIn('jack', 'openid mcp')
    const client = createOnBehalfOf({
      issuer: idp.issuer,
      clientId: BACKEND.id,
      clientSecret: BACKEND.secret,
    })
    await client.check()
    await idp.close()
    await refusedWith(client.tokenFor({ token }, { audience: ORDERS }), 'provider_unavailable')
    const fresh = createOnBehalfOf({ tokenEndpoint: `${idp.issuer}/token`, clientId: 'x', clientSecret: 'y' })
    await refusedWith(fresh.check(), 'provider_unavailable')
    await refusedWith(
      createOnBehalfOf({ issuer: idp.issuer, clientId: 'x', clientSecret: 'y' }).check(),
      'provider_unavailable',
    )
  })

  test('plain http to another machine is refused before anything is sent', async () => {
    const client = createOnBehalfOf({
      tokenEndpoint: 'http://idp.example.com/token',
      clientId: 'x',
      clientSecret: 'y',
    })
    await refusedWith(client.check(), 'exchange_failed')
  })
})

describe('on-behalf-of: a token endpoint that answers badly', () => {
  /** A token endpoint whose answer is chosen by the client id it is sent. */
  const ANSWERS: Record<string, (res: ServerResponse) => void> = {
    dpop: (res) => json(res, 200, { access_token: 'abc', token_type: 'DPoP', expires_in: 60 }),
    'no-token': (res) => json(res, 200, { token_type: 'Bearer' }),
    'header-break': (res) => json(res, 200, { access_token: 'abc\r\nx-evil: 1', token_type: 'Bearer' }),
    'refresh-only': (res) =>
      json(res, 200, {
        access_token: 'abc',
        token_type: 'Bearer',
        issued_token_type: 'urn:ietf:params:oauth:token-type:refresh_token',
      }),
    'bad-expiry': (res) => json(res, 200, { access_token: 'abc', token_type: 'Bearer', expires_in: -5 }),
    huge: (res) => json(res, 200, { access_token: 'a'.repeat(100_000), token_type: 'Bearer' }),
    redirect: (res) => res.writeHead(302, { location: 'https://elsewhere.example/token' }).end(),
    'not-json-500': (res) => res.writeHead(500).end('<html>oops</html>'),
    busy: (res) => json(res, 400, { error: 'temporarily_unavailable' }),
    'always-reset': (res) => res.socket?.destroy(),
    'reset-once': (res) => {
      resets += 1
      if (resets === 1) res.socket?.destroy()
      else json(res, 200, { access_token: 'second-try', token_type: 'Bearer', expires_in: 60 })
    },
    'wrong-secret': (res) => json(res, 401, { error: 'invalid_client' }),
  }
  const json = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  let server: Server
  let endpoint: string
  let resets = 0

  before(async () => {
    server = createServer(async (req, res) => {
      let body = ''
      for await (const chunk of req) body += chunk
      const answer = ANSWERS[new URLSearchParams(body).get('client_id') ?? '']
      if (answer) answer(res)
      else json(res, 400, { error: 'invalid_request' })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`
  })
  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  const ask = (clientId: string) =>
    createOnBehalfOf({
      tokenEndpoint: endpoint,
      clientId,
      clientSecret: 's',
      method: 'client_secret_post',
    }).tokenFor({ token: 'the-user-token' }, { audience: ORDERS })

  for (const clientId of [
    'dpop',
    'no-token',
    'header-break',
    'refresh-only',
    'bad-expiry',
    'huge',
    'redirect',
    'wrong-secret',
  ]) {
    test(`${clientId}: exchange_failed, no token`, async () => {
      await refusedWith(ask(clientId), 'exchange_failed')
    })
  }
  test('a connection closed before any answer is tried once more, then provider_unavailable', async () => {
    assert.equal((await ask('reset-once')).accessToken, 'second-try')
    assert.equal(resets, 2)
    await refusedWith(ask('always-reset'), 'provider_unavailable')
  })

  for (const clientId of ['not-json-500', 'busy']) {
    test(`${clientId}: provider_unavailable`, async () => {
      await refusedWith(ask(clientId), 'provider_unavailable')
    })
  }
})
