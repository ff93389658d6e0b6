import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose'
import type { AuthorizationServerOptions } from '../../src/auth-server/index.ts'
import {
  ACCESS_TOKEN_TYPE,
  disableUser,
  enableUser,
  revokeGrants,
  TOKEN_EXCHANGE_GRANT,
} from '../../src/auth-server/index.ts'
import { resolveOptions } from '../../src/auth-server/options.ts'
import { createGuard } from '../../src/guard/index.ts'
import {
  authorize,
  basic,
  type Harness,
  registerPublicClient,
  SECRET,
  startAuthServer,
  token,
} from './harness.ts'

const API = 'https://orders.internal.example/api'
const OTHER_API = 'https://billing.internal.example/api'
const MCP_SCOPES = ['mcp:read', 'mcp:write', 'orders:read', 'orders:write']

const GATEWAY = { client_id: 'gateway', client_secret: 'gateway-secret-gateway-secret-0123' }
const BYSTANDER = { client_id: 'bystander', client_secret: 'bystander-secret-bystander-secret' }
const gateway = basic(GATEWAY.client_id, GATEWAY.client_secret)
const bystander = basic(BYSTANDER.client_id, BYSTANDER.client_secret)
const declaredClient = (client: { client_id: string; client_secret?: string }) => ({
  ...client,
  grant_types: [],
  redirect_uris: [],
  response_types: [],
})

/** Two MCP resources; the gateway may exchange /mcp tokens for orders:read at the orders API only. */
function overrides(origin: string): Partial<AuthorizationServerOptions> {
  return {
    resources: [
      { url: `${origin}/mcp`, scopes: MCP_SCOPES, default: true },
      { url: `${origin}/other`, scopes: ['orders:read'] },
    ],
    clients: [
      declaredClient(GATEWAY),
      declaredClient(BYSTANDER),
      declaredClient({ client_id: 'declared-public' }),
      {
        client_id: 'machine',
        client_secret: 'machine-secret-machine-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: 'orders:read',
      },
    ],
    tokenExchange: [
      {
        clients: ['gateway'],
        audiences: [API],
        scopes: ['orders:read', 'orders:write'],
        resources: [`${origin}/mcp`],
      },
      { clients: ['bystander'], audiences: [OTHER_API], scopes: ['orders:read'] },
    ],
  }
}

/** The harness with the exchange policy; its origin is known only once it listens, hence the restart. */
async function start(ttl: AuthorizationServerOptions['ttl'] = {}): Promise<Harness> {
  const h = await startAuthServer()
  await h.restart({ ...overrides(h.origin), ttl })
  return h
}

/** A user's MCP access token through the real code flow (development sign-in, consent approved). */
async function mcpToken(h: Harness, scope: string, resource = h.resource): Promise<string> {
  const clientId = await registerPublicClient(h, { scope: MCP_SCOPES.join(' ') })
  const { code, redirectUri, verifier } = await authorize(h, clientId, { resource, scope })
  const { response, body } = await token(h, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    client_id: clientId,
    resource,
  })
  assert.equal(response.status, 200, JSON.stringify(body))
  return body.access_token as string
}

const exchange = (h: Harness, params: Record<string, string>, headers: Record<string, string> = gateway) =>
  token(h, { grant_type: TOKEN_EXCHANGE_GRANT, subject_token_type: ACCESS_TOKEN_TYPE, ...params }, headers)

/** A refusal: the RFC's error, and no token. */
function refused(result: Awaited<ReturnType<typeof token>>, error: string, description?: RegExp) {
  assert.equal(result.response.status, error === 'invalid_client' ? 401 : 400, JSON.stringify(result.body))
  assert.equal(result.body.error, error, JSON.stringify(result.body))
  if (description) assert.match(result.body.error_description as string, description)
  assert.equal(result.body.access_token, undefined)
}

describe('token exchange (RFC 8693) at the embedded authorization server', () => {
  let h: Harness
  let subject: string
  const silent = { warn: () => {}, info: () => {} }
  before(async () => {
    h = await start()
    subject = await mcpToken(h, 'mcp:read orders:read')
  })
  after(() => h.close())

  test('a declared client exchanges a user token for a narrower JWT for the API: sub, act, aud, scope', async () => {
    const { response, body } = await exchange(h, {
      subject_token: subject,
      resource: API,
      scope: 'orders:read',
    })
    assert.equal(response.status, 200, JSON.stringify(body))
    assert.equal(body.issued_token_type, ACCESS_TOKEN_TYPE)
    assert.equal(body.token_type, 'Bearer')
    assert.equal(body.scope, 'orders:read')
    assert.equal(body.refresh_token, undefined)
    const exchanged = body.access_token as string
    const api = await createGuard({
      resource: API,
      authorizationServers: [{ issuer: h.issuer }],
      logger: silent,
    })
    const verified = await api.verifyToken(exchanged)
    const user = decodeJwt(subject)
    assert.equal(verified.subject, user.sub)
    assert.equal(verified.clientId, 'gateway')
    assert.deepEqual(verified.audience, [API])
    assert.deepEqual(verified.scopes, ['orders:read'])
    assert.deepEqual(verified.claims.act, { sub: 'gateway' })
    assert.equal(verified.actor, 'user')
    assert.equal(decodeProtectedHeader(exchanged).typ, 'at+jwt')
    const claims = decodeJwt(exchanged)
    const lifetime = (claims.exp as number) - (claims.iat as number)
    assert.ok(lifetime <= 300 && lifetime > 290, `lifetime ${lifetime}`)
    assert.equal(Number(body.expires_in), lifetime)
    assert.ok((claims.exp as number) <= (user.exp as number))
    // Not an MCP token: the MCP resource's guard refuses it, and it cannot be exchanged again.
    const mcp = await createGuard({
      resource: h.resource,
      authorizationServers: [{ issuer: h.issuer }],
      logger: silent,
    })
    await assert.rejects(mcp.verifyToken(exchanged))
    refused(await exchange(h, { subject_token: exchanged, resource: API }), 'invalid_request', /audience/)
  })

  test('the target may be given as audience; without scope, what both the token and the policy allow', async () => {
    const { response, body } = await exchange(h, { subject_token: subject, audience: API })
    assert.equal(response.status, 200, JSON.stringify(body))
    assert.equal(body.scope, 'orders:read')
    assert.equal(decodeJwt(body.access_token as string).aud, API)
  })

  test('the grant is advertised', async () => {
    const metadata = (await (await fetch(`${h.issuer}/.well-known/oauth-authorization-server`)).json()) as {
      grant_types_supported: string[]
    }
    assert.ok(metadata.grant_types_supported.includes(TOKEN_EXCHANGE_GRANT))
  })

  test('clients the policy does not name: unauthorized_client', async () => {
    // A declared confidential client whose rule is for another API only still may exchange, but not for this API.
    refused(await exchange(h, { subject_token: subject, resource: API }, bystander), 'invalid_target')
    const undeclared = await registerPublicClient(h)
    refused(
      await exchange(h, { subject_token: subject, resource: API, client_id: undeclared }, {}),
      'unauthorized_client',
    )
    refused(
      await exchange(h, { subject_token: subject, resource: API, client_id: 'declared-public' }, {}),
      'unauthorized_client',
    )
    refused(
      await exchange(
        h,
        { subject_token: subject, resource: API },
        basic('machine', 'machine-secret-machine-secret'),
      ),
      'unauthorized_client',
    )
    refused(
      await exchange(h, { subject_token: subject, resource: API }, basic('gateway', 'wrong')),
      'invalid_client',
    )
  })

  test('targets outside the policy: invalid_target', async () => {
    refused(await exchange(h, { subject_token: subject, resource: OTHER_API }), 'invalid_target', /gateway/)
    refused(
      await exchange(h, { subject_token: subject, resource: 'https://evil.example/api' }),
      'invalid_target',
    )
    refused(await exchange(h, { subject_token: subject, resource: h.resource }), 'invalid_target')
    refused(
      await exchange(h, { subject_token: subject, resource: API, audience: API }),
      'invalid_target',
      /once/,
    )
    // The gateway's rule accepts tokens of /mcp only.
    const otherToken = await mcpToken(h, 'orders:read', h.other)
    refused(await exchange(h, { subject_token: otherToken, resource: API }), 'invalid_target', /other/)
  })

  test('scopes only narrow: invalid_scope for one not in the subject token or not in the policy', async () => {
    refused(
      await exchange(h, { subject_token: subject, resource: API, scope: 'orders:read orders:write' }),
      'invalid_scope',
      /orders:write is not in the subject token/,
    )
    refused(
      await exchange(h, { subject_token: subject, resource: API, scope: 'mcp:read' }),
      'invalid_scope',
      /not allowed/,
    )
    const noOrders = await mcpToken(h, 'mcp:read')
    refused(await exchange(h, { subject_token: noOrders, resource: API }), 'invalid_scope')
  })

  test('malformed requests: invalid_request', async () => {
    refused(await exchange(h, { resource: API }), 'invalid_request', /subject_token/)
    refused(await exchange(h, { subject_token: subject }), 'invalid_request', /target/)
    refused(
      await exchange(h, {
        subject_token: subject,
        resource: API,
        subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
      }),
      'invalid_request',
      /subject_token_type/,
    )
    refused(
      await exchange(h, {
        subject_token: subject,
        resource: API,
        requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token',
      }),
      'invalid_request',
      /requested_token_type/,
    )
    refused(
      await exchange(h, {
        subject_token: subject,
        resource: API,
        actor_token: subject,
        actor_token_type: ACCESS_TOKEN_TYPE,
      }),
      'invalid_request',
      /actor_token/,
    )
  })

  test('subject tokens this server did not issue to a user: invalid_request', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256')
    const forged = await new SignJWT({ ...decodeJwt(subject) })
      .setProtectedHeader({
        alg: 'ES256',
        typ: 'at+jwt',
        kid: decodeProtectedHeader(subject).kid as string,
        jwk: await exportJWK(publicKey),
      })
      .sign(privateKey)
    refused(
      await exchange(h, { subject_token: forged, resource: API }),
      'invalid_request',
      /not a valid access token/,
    )
    refused(
      await exchange(h, { subject_token: `${subject.slice(0, -4)}AAAA`, resource: API }),
      'invalid_request',
    )
    refused(await exchange(h, { subject_token: 'opaque-garbage', resource: API }), 'invalid_request')
    const machine = await token(
      h,
      { grant_type: 'client_credentials', resource: h.resource, scope: 'orders:read' },
      basic('machine', 'machine-secret-machine-secret'),
    )
    assert.equal(machine.response.status, 200, JSON.stringify(machine.body))
    refused(
      await exchange(h, { subject_token: machine.body.access_token as string, resource: API }),
      'invalid_request',
      /for a user/,
    )
  })

  test('a token from another issuer: invalid_request', async () => {
    const foreign = await start()
    try {
      const theirs = await mcpToken(foreign, 'orders:read')
      refused(
        await exchange(h, { subject_token: theirs, resource: API }),
        'invalid_request',
        /not a valid access token/,
      )
    } finally {
      await foreign.close()
    }
  })

  test('a revoked subject token, or one of a disabled user: invalid_request', async () => {
    const fresh = await mcpToken(h, 'orders:read')
    const { sub } = decodeJwt(fresh) as { sub: string }
    const user = await h.store.users.findById(sub)
    assert.ok(user)
    await disableUser(h.store, user)
    refused(await exchange(h, { subject_token: subject, resource: API }), 'invalid_request', /disabled/)
    await enableUser(h.store, user)
    // Tokens from before the disable stay revoked; a new one works until its own grant is revoked.
    refused(await exchange(h, { subject_token: fresh, resource: API }), 'invalid_request', /revoked/)
    await sleep(1100)
    const after = await mcpToken(h, 'orders:read')
    assert.equal((await exchange(h, { subject_token: after, resource: API })).response.status, 200)
    await sleep(1100)
    await revokeGrants(h.store, sub, decodeJwt(after).client_id as string)
    refused(await exchange(h, { subject_token: after, resource: API }), 'invalid_request', /revoked/)
  })
})

describe('the exchanged token never outlives its subject token', () => {
  let h: Harness
  before(async () => {
    h = await start({ accessToken: 2 })
  })
  after(() => h.close())

  test('its lifetime is the subject token’s remaining one; an expired subject token is invalid_request', async () => {
    const subject = await mcpToken(h, 'orders:read')
    const { response, body } = await exchange(h, { subject_token: subject, resource: API })
    assert.equal(response.status, 200, JSON.stringify(body))
    assert.ok((decodeJwt(body.access_token as string).exp as number) <= (decodeJwt(subject).exp as number))
    assert.ok(Number(body.expires_in) <= 2)
    await sleep(2100)
    refused(await exchange(h, { subject_token: subject, resource: API }), 'invalid_request', /exp/)
  })
})

describe('without a policy the grant does not exist', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer()
  })
  after(() => h.close())

  test('unsupported_grant_type, and not advertised', async () => {
    const metadata = (await (await fetch(`${h.issuer}/.well-known/oauth-authorization-server`)).json()) as {
      grant_types_supported: string[]
    }
    assert.ok(!metadata.grant_types_supported.includes(TOKEN_EXCHANGE_GRANT))
    const result = await token(
      h,
      { grant_type: TOKEN_EXCHANGE_GRANT, subject_token: 'x', subject_token_type: ACCESS_TOKEN_TYPE },
      basic('resource-server', 'resource-server-secret-0123456'),
    )
    assert.equal(result.body.error, 'unsupported_grant_type')
  })
})

describe('the policy is checked at start', () => {
  const base = {
    issuer: 'https://as.example',
    secret: SECRET,
    store: { oidcAdapter: () => ({}) } as never,
    resources: [{ url: 'https://mcp.example/mcp', scopes: ['orders:read'] }],
    clients: [declaredClient(GATEWAY), declaredClient({ client_id: 'public' })],
  }
  const rule = { clients: ['gateway'], audiences: [API], scopes: ['orders:read'] }
  const cases: [string, object, RegExp][] = [
    ['an undeclared client', { ...rule, clients: ['ghost'] }, /ghost is not a declared client/],
    ['a public client', { ...rule, clients: ['public'] }, /public is a public client/],
    [
      'an MCP resource as audience',
      { ...rule, audiences: ['https://mcp.example/mcp'] },
      /is an MCP resource/,
    ],
    [
      'an unknown subject resource',
      { ...rule, resources: ['https://x.example/mcp'] },
      /is not one of the resources/,
    ],
    ['no scopes', { ...rule, scopes: [] }, /scopes must be a non-empty list/],
  ]
  for (const [name, bad, message] of cases) {
    test(`refuses ${name}`, () => {
      assert.throws(() => resolveOptions({ ...base, tokenExchange: [bad as never] }), message)
    })
  }

  test('a client in the policy gets the grant type, next to its own', () => {
    const resolved = resolveOptions({ ...base, tokenExchange: [rule] })
    assert.deepEqual(resolved.clients.find((c) => c.client_id === 'gateway')?.grant_types, [
      TOKEN_EXCHANGE_GRANT,
    ])
    assert.deepEqual(resolved.clients.find((c) => c.client_id === 'public')?.grant_types, [])
  })
})
