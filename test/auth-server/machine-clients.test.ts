import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { decodeJwt } from 'jose'
import { MACHINE_TOKEN_GTY } from '../../src/auth-server/index.ts'
import { resolveOptions } from '../../src/auth-server/options.ts'
import {
  basic,
  connect,
  type Harness,
  register,
  registerPublicClient,
  SECRET,
  startAuthServer,
  token,
} from './harness.ts'

const MACHINE = basic('machine', 'machine-secret-machine-secret')
const NARROW = { client_id: 'narrow', client_secret: 'narrow-secret-narrow-secret-0123' }

/** The attack of issue 7: a public client registered for client_credentials asks for every scope. */
const SELF_ACTING = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }

async function introspect(h: Harness, tokenValue: string, credentials: Record<string, string>) {
  const response = await fetch(`${h.issuer}/introspect`, {
    method: 'POST',
    headers: credentials,
    body: new URLSearchParams({ token: tokenValue }),
  })
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

describe('an outsider with no declared machine client gets no token without a user', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer({ overrides: { clients: [] } })
  })
  after(() => h.close())

  test('registering a client_credentials client is invalid_client_metadata, and the grant does not exist', async () => {
    const registered = await register(h, SELF_ACTING)
    assert.equal(registered.response.status, 400)
    assert.equal(registered.body.error, 'invalid_client_metadata')
    assert.match(registered.body.error_description as string, /grant_types value "client_credentials"/)
    assert.equal(registered.body.client_id, undefined)

    const metadata = (await (await fetch(`${h.issuer}/.well-known/oauth-authorization-server`)).json()) as {
      grant_types_supported: string[]
    }
    assert.ok(!metadata.grant_types_supported.includes('client_credentials'))
    // A registered user-acting client trying the grant anyway.
    const clientId = await registerPublicClient(h)
    const attempt = await token(h, {
      grant_type: 'client_credentials',
      client_id: clientId,
      resource: h.resource,
      scope: 'mcp:read mcp:write',
    })
    assert.equal(attempt.response.status, 400)
    assert.equal(attempt.body.error, 'unsupported_grant_type')
    assert.equal(attempt.body.access_token, undefined)
  })
})

describe('registration yields only clients acting for a signed-in user', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer()
  })
  after(() => h.close())

  const refused: [string, Record<string, unknown>, RegExp][] = [
    ['client_credentials', SELF_ACTING, /grant_types value "client_credentials"/],
    [
      'client_credentials next to authorization_code',
      { grant_types: ['authorization_code', 'client_credentials'], redirect_uris: ['http://127.0.0.1/cb'] },
      /grant_types value "client_credentials"/,
    ],
    [
      'the implicit grant',
      { grant_types: ['implicit'], redirect_uris: ['http://127.0.0.1/cb'] },
      /grant_types value "implicit"/,
    ],
    [
      'a token response type',
      { response_types: ['code', 'code token'], redirect_uris: ['http://127.0.0.1/cb'] },
      /response_types value "code token"/,
    ],
  ]
  for (const [name, body, message] of refused) {
    test(`${name}: 400 invalid_client_metadata naming the value, no client`, async () => {
      const { response, body: answer } = await register(h, body)
      assert.equal(response.status, 400)
      assert.equal(answer.error, 'invalid_client_metadata')
      assert.match(answer.error_description as string, message)
      assert.equal(answer.client_id, undefined)
    })
  }

  test('even with machine clients declared, a self-registered client cannot use client_credentials', async () => {
    const { response } = await register(h, {
      ...SELF_ACTING,
      token_endpoint_auth_method: 'client_secret_basic',
    })
    assert.equal(response.status, 400)
  })
})

describe('declared machine clients', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer()
    // The harness picks the port: the narrow client's resource is known once it listens.
    await h.restart({
      clients: [
        {
          client_id: 'machine',
          client_secret: 'machine-secret-machine-secret',
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          scope: 'mcp:read other:read',
        },
        {
          ...NARROW,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          scope: 'other:read',
          resources: [h.other],
        },
        {
          client_id: 'resource-server',
          client_secret: 'resource-server-secret-0123456',
          grant_types: [],
          redirect_uris: [],
          response_types: [],
          resource_server: true,
        },
      ],
    })
  })
  after(() => h.close())

  test('a token without a user says so: sub is the client_id and gty is client_credentials', async () => {
    const { response, body } = await token(
      h,
      { grant_type: 'client_credentials', resource: h.resource, scope: 'mcp:read' },
      MACHINE,
    )
    assert.equal(response.status, 200)
    const claims = decodeJwt(body.access_token as string)
    assert.equal(claims.sub, 'machine')
    assert.equal(claims.client_id, 'machine')
    assert.equal(claims.gty, MACHINE_TOKEN_GTY)
    assert.equal(claims.scope, 'mcp:read')
    // A user's token carries no gty.
    const user = await connect(h, await registerPublicClient(h))
    assert.equal(decodeJwt(user.access_token as string).gty, undefined)
  })

  test('a scope the client was not given is invalid_scope, not a token', async () => {
    const { response, body } = await token(
      h,
      { grant_type: 'client_credentials', resource: h.resource, scope: 'mcp:read mcp:write' },
      MACHINE,
    )
    assert.equal(response.status, 400)
    assert.equal(body.error, 'invalid_scope')
    assert.equal(body.access_token, undefined)
  })

  test('a resource the client was not given is invalid_target, also when it is the default', async () => {
    const credentials = basic(NARROW.client_id, NARROW.client_secret)
    const given = await token(
      h,
      { grant_type: 'client_credentials', resource: h.other, scope: 'other:read' },
      credentials,
    )
    assert.equal(given.response.status, 200, JSON.stringify(given.body))
    for (const params of [{ resource: h.resource }, {}] as Record<string, string>[]) {
      const { response, body } = await token(h, { grant_type: 'client_credentials', ...params }, credentials)
      assert.equal(response.status, 400)
      assert.equal(body.error, 'invalid_target')
      assert.match(body.error_description as string, /is not allowed for client narrow/)
    }
  })

  test('introspection: never a self-registered client, even a confidential one; the declared resource server yes', async () => {
    const userClient = await registerPublicClient(h)
    const { refresh_token } = await connect(h, userClient)
    const dcr = await register(h, {
      client_name: 'confidential outsider',
      application_type: 'web',
      redirect_uris: ['https://outsider.example/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
    })
    assert.equal(dcr.response.status, 201)
    const outsider = basic(dcr.body.client_id as string, dcr.body.client_secret as string)
    const refused = await introspect(h, refresh_token as string, outsider)
    assert.deepEqual(refused, { status: 200, body: { active: false } })
    // A declared machine client is no resource server: not someone else's token either.
    assert.deepEqual(await introspect(h, refresh_token as string, MACHINE), {
      status: 200,
      body: { active: false },
    })
    const allowed = await introspect(
      h,
      refresh_token as string,
      basic('resource-server', 'resource-server-secret-0123456'),
    )
    assert.equal(allowed.body.active, true)
    assert.equal(allowed.body.client_id, userClient)
  })
})

describe('declaring a machine client', () => {
  const resource = 'https://mcp.example.com/mcp'
  const declare = (client: Record<string, unknown>) => () =>
    resolveOptions({
      issuer: 'https://mcp.example.com',
      secret: SECRET,
      store: { oidcAdapter: () => ({}) } as never,
      resources: [{ url: resource, scopes: ['mcp'] }],
      clients: [
        {
          client_id: 'bot',
          client_secret: 'bot-secret-bot-secret-bot-secret',
          grant_types: ['client_credentials'],
          scope: 'mcp',
          ...client,
        },
      ],
    })

  test('needs scope, a secret and known resources; Gatehouse keys never reach the provider', () => {
    assert.throws(declare({ scope: undefined }), {
      name: 'AuthServerError',
      code: 'options_invalid',
      message: /^authorization server: client bot: a client_credentials client needs scope/,
    })
    assert.throws(
      declare({ client_secret: undefined }),
      /client bot: a client_credentials client must authenticate: give it a client_secret/,
    )
    assert.throws(
      declare({ resources: ['https://elsewhere.example/mcp'] }),
      /client bot: resource "https:\/\/elsewhere.example\/mcp" is not one of https:\/\/mcp.example.com\/mcp/,
    )
    assert.throws(
      declare({ grant_types: ['authorization_code'], resources: [resource] }),
      /resources applies to client_credentials clients only/,
    )
    assert.throws(
      declare({ client_secret: undefined, grant_types: [], resource_server: true }),
      /a resource_server must authenticate/,
    )
    const resolved = declare({ resource_server: true })()
    assert.deepEqual(Object.keys(resolved.clients[0] ?? {}).sort(), [
      'client_id',
      'client_secret',
      'grant_types',
      'scope',
      'token_endpoint_auth_method',
    ])
    assert.deepEqual(resolved.declaredClients.get('bot'), {
      machineResources: new Set([resource]),
      confidential: true,
      resourceServer: true,
    })
  })
})
