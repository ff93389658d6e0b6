import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, beforeEach, describe, it } from 'node:test'
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose'
import { UPSTREAM_JWKS_PATH, UpstreamIdentity } from '../../src/gateway/identity.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import type { VerifiedToken } from '../../src/guard/index.ts'
import { postRpc, startIdp, startTestGateway, tokenFor } from '../support/gateway-harness.ts'
import { startScriptedUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const CALL = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: {} } }

/** Above the size the gateway reads whole (64 KiB), so that it streams, in the upstream's pieces. */
function bigAnswer(): string {
  const text = 'é'.repeat(100_000)
  return `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"${text}"}],"n":1.0}}`
}

describe('gateway: the proxied path, answers read whole or piped', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>
  let gateway: Gateway
  let auth: Record<string, string>

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startScriptedUpstream()])
    gateway = await startTestGateway(idp, { upstream: upstream.url })
    auth = { authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp')}` }
  })

  beforeEach(() => {
    upstream.requests.length = 0
  })

  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  it('relays a long answer of known length byte for byte, with its length, as it comes', async () => {
    const body = Buffer.from(bigAnswer())
    upstream.answer = (_request, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
      res.write(body.subarray(0, 1000))
      setTimeout(() => res.end(body.subarray(1000)), 50)
    }
    const response = await postRpc(gateway.resource, CALL, auth)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-length'), String(body.length))
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), body)
  })

  it('answers 502 when a short answer of known length stops before its end', async () => {
    upstream.answer = (_request, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' })
      res.write('{"jsonrpc":"2.0",', () => res.destroy())
    }
    const response = await postRpc(gateway.resource, CALL, auth)
    assert.equal(response.status, 502)
    assert.deepEqual(await response.json(), {
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32603, message: 'the MCP server connection failed' },
    })
    // The connection to the upstream is not reused in a broken state: the next call goes through.
    upstream.answer = (_request, res) =>
      void res
        .writeHead(200, { 'content-type': 'application/json' })
        .end('{"jsonrpc":"2.0","id":1,"result":{}}')
    assert.equal((await postRpc(gateway.resource, CALL, auth)).status, 200)
  })

  it('ends the upstream request when the client goes away in the middle of a long answer', async () => {
    const body = Buffer.from(bigAnswer())
    let upstreamClosed: Promise<unknown> = Promise.resolve()
    upstream.answer = (_request, res) => {
      upstreamClosed = once(res, 'close')
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
      res.write(body.subarray(0, 70_000))
    }
    const client = new AbortController()
    const response = await fetch(gateway.resource, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify(CALL),
      signal: client.signal,
    })
    const reader = response.body?.getReader()
    await reader?.read()
    client.abort()
    await upstreamClosed
    assert.equal(upstream.requests.length, 1)
  })

  it("reuses a caller's identity headers, and signs another caller's own", async () => {
    const identities: string[] = []
    upstream.answer = (request, res) => {
      identities.push(request.headers['x-gatehouse-identity'] as string)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{}}')
    }
    const bob = { authorization: `Bearer ${await tokenFor(idp, 'bob', 'mcp')}` }
    for (const headers of [auth, auth, bob]) await (await postRpc(gateway.resource, CALL, headers)).text()
    const jwks = createLocalJWKSet(await (await fetch(new URL(UPSTREAM_JWKS_PATH, gateway.resource))).json())
    const verified = await Promise.all(
      identities.map((jwt) => jwtVerify(jwt, jwks, { issuer: gateway.resource, audience: upstream.url })),
    )
    assert.deepEqual(
      verified.map(({ payload }) => payload.sub),
      ['alice', 'alice', 'bob'],
    )
    assert.equal(identities[0], identities[1])
  })
})

describe('UpstreamIdentity: one assertion per caller, for 45 s', () => {
  const caller = (fields: Partial<VerifiedToken>): VerifiedToken => ({
    token: 'not used',
    issuer: 'https://issuer.test',
    subject: 'alice',
    clientId: 'client',
    scopes: ['mcp'],
    audience: [],
    expiresAt: undefined,
    claims: {},
    actor: 'user',
    dpopJkt: undefined,
    via: 'jwt',
    ...fields,
  })
  const identityOf = (headers: Readonly<Record<string, string>>) =>
    decodeJwt(headers['x-gatehouse-identity'] as string)

  it('keeps callers apart whose values would read alike run together', () => {
    const identity = new UpstreamIdentity('https://gateway.test/mcp', 'http://upstream.test/mcp')
    const pairs: [Partial<VerifiedToken>, Partial<VerifiedToken>][] = [
      [
        { subject: 'ab', clientId: 'c' },
        { subject: 'a', clientId: 'bc' },
      ],
      [{ subject: '1:a' }, { subject: undefined, clientId: '1:a' }],
      [
        { subject: 'a', actor: 'user' },
        { subject: 'a', actor: 'client' },
      ],
      [{ scopes: ['mcp'] }, { scopes: ['mcp', 'admin'] }],
      [{ issuer: 'https://a.test' }, { issuer: 'https://b.test' }],
    ]
    for (const [first, second] of pairs) {
      const [a, b] = [first, second].map((fields) => {
        const token = caller(fields)
        const claims = identityOf(identity.headers(token))
        assert.deepEqual(
          [claims.sub, claims.client_id, claims.actor, claims.scope, claims.token_issuer],
          [
            token.subject ?? token.clientId,
            token.clientId,
            token.actor,
            token.scopes.join(' '),
            token.issuer,
          ],
        )
        return claims
      })
      assert.notEqual(a?.jti, b?.jti, JSON.stringify([first, second]))
    }
  })

  for (const [label, tokenOf] of [
    [
      'the same token',
      (() => {
        const alice = caller({})
        return () => alice
      })(),
    ],
    ['another token of the same caller', () => caller({})],
  ] as const) {
    it(`signs a new assertion once 45 s have passed, never one with less than 15 s left (${label})`, (t) => {
      t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-11-27T12:00:00Z') })
      const identity = new UpstreamIdentity('https://gateway.test/mcp', 'http://upstream.test/mcp')
      const first = identityOf(identity.headers(tokenOf()))
      t.mock.timers.tick(44_999)
      assert.equal(identityOf(identity.headers(tokenOf())).jti, first.jti)
      t.mock.timers.tick(1)
      const second = identityOf(identity.headers(tokenOf()))
      assert.notEqual(second.jti, first.jti)
      assert.equal(second.iat, (first.iat as number) + 45)
      assert.equal((second.exp as number) - (second.iat as number), 60)
    })
  }
})
