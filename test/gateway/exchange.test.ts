import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'
import { loadGatewayConfig } from '../../src/gateway/config.ts'
import { createGatewayLogger } from '../../src/gateway/logger.ts'
import { type Gateway, startGateway } from '../../src/gateway/server.ts'
import { OnBehalfOfError } from '../../src/on-behalf-of/index.ts'
import { type ExchangeApi, startExchangeApi } from '../support/exchange-api.ts'
import { type ExchangeIdp, startExchangeIdp } from '../support/exchange-idp.ts'
import { connectClient, INITIALIZE, postRpc } from '../support/gateway-harness.ts'

const MCP = 'https://mcp.gatehouse.test/mcp'
const ORDERS = 'https://orders.internal.example/api'
const BILLING = 'https://billing.internal.example/api'
const GATEWAY = { id: 'gateway', secret: 'gateway-secret-gateway-secret-0123' }

/** `gatehouse serve` in front of the API, exchanging at the external provider, as a YAML file configures it. */
async function startExchangeGateway(
  idp: ExchangeIdp,
  api: ExchangeApi,
  exchange: Record<string, unknown> = {},
): Promise<Gateway> {
  const path = join(await mkdtemp(join(tmpdir(), 'gatehouse-exchange-')), 'gatehouse.yaml')
  const file = {
    transport: { type: 'streamable_http', port: 0 },
    upstream: api.url,
    upstream_credentials: {
      mode: 'exchange',
      exchange: {
        issuer: idp.issuer,
        client_id: GATEWAY.id,
        audience: ORDERS,
        scope: 'orders:read',
        ...exchange,
      },
    },
  }
  await writeFile(path, stringify(file))
  const config = await loadGatewayConfig(
    { config: path },
    { OAUTH_ISSUER_URL: idp.issuer, OAUTH_AUDIENCE: MCP, GATEHOUSE_EXCHANGE_CLIENT_SECRET: GATEWAY.secret },
  )
  return startGateway(config, { logger: createGatewayLogger('silent') })
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function whoami(gateway: Gateway, token: string) {
  const client = await connectClient(gateway.resource, token)
  try {
    const result = await client.callTool({ name: 'whoami', arguments: {} })
    return result.structuredContent as Record<string, unknown>
  } finally {
    await client.close()
  }
}

/** A refusal the gateway answered itself: status, challenge, and the API saw nothing of it. */
async function refused(
  gateway: Gateway,
  api: ExchangeApi,
  token: string,
  status: number,
  challenge: RegExp | undefined,
) {
  const seen = api.seen.length
  const response = await postRpc(gateway.resource, INITIALIZE, bearer(token))
  assert.equal(response.status, status)
  const body = (await response.json()) as { error?: { message?: string } | string }
  assert.ok(body.error, 'an error the client can show')
  if (challenge) assert.match(response.headers.get('www-authenticate') ?? '', challenge)
  assert.equal(api.seen.length, seen, 'the API saw nothing')
  return response
}

describe('gateway upstream_credentials.mode exchange at an external provider (RFC 8693)', () => {
  let idp: ExchangeIdp
  let api: ExchangeApi
  let gateway: Gateway
  let alice: string

  before(async () => {
    idp = await startExchangeIdp({
      mcp: { resource: MCP, scopes: ['mcp', 'orders:read', 'orders:write'] },
      clients: [GATEWAY],
      rules: [{ client: GATEWAY.id, audience: ORDERS, scopes: ['orders:read', 'orders:write'] }],
    })
    api = await startExchangeApi(ORDERS, 'orders:read')
    api.trust(idp.issuer)
    gateway = await startExchangeGateway(idp, api)
    alice = await idp.signIn('alice', 'openid mcp orders:read orders:write')
  })
  after(async () => {
    await gateway?.close()
    await api?.close()
    await idp?.close()
  })

  test('the API gets a token for its audience: the user as sub, the gateway in act, the scope narrowed', async () => {
    const said = await whoami(gateway, alice)
    assert.deepEqual(said, {
      sub: 'alice',
      aud: ORDERS,
      scope: 'orders:read',
      act: { sub: GATEWAY.id },
      client_id: GATEWAY.id,
    })
  })

  test("the client's own token never reaches the API, in any header", async () => {
    await whoami(gateway, alice)
    assert.ok(api.seen.length > 0)
    for (const headers of api.seen) {
      assert.doesNotMatch(JSON.stringify(headers), new RegExp(alice.split('.')[2] as string))
      assert.match(String(headers.authorization), /^Bearer eyJ/)
    }
  })

  test('cache: a session of many calls makes one exchange at the provider', async () => {
    const bob = await idp.signIn('bob', 'openid mcp orders:read')
    const before = idp.exchanges.length
    const client = await connectClient(gateway.resource, bob)
    try {
      for (let i = 0; i < 10; i++) await client.callTool({ name: 'whoami', arguments: {} })
    } finally {
      await client.close()
    }
    assert.equal(idp.exchanges.length - before, 1)
  })

  test('concurrency: N requests at once with a new token make one exchange, and all go through', async () => {
    const carol = await idp.signIn('carol', 'openid mcp orders:read')
    const before = idp.exchanges.length
    const release = idp.hold()
    const answers = Array.from({ length: 8 }, () => postRpc(gateway.resource, INITIALIZE, bearer(carol)))
    while (idp.exchanges.length === before) await sleep(10)
    // Time for the others to reach the gateway while the first exchange is held; the count holds either way.
    await sleep(200)
    release()
    for (const response of await Promise.all(answers)) assert.equal(response.status, 200)
    assert.equal(idp.exchanges.length - before, 1)
  })

  test('revoked at the provider: 401 invalid_token, so the client signs in again; the API saw nothing', async () => {
    const dave = await idp.signIn('dave', 'openid mcp orders:read')
    idp.revokeUser('dave')
    await refused(
      gateway,
      api,
      dave,
      401,
      /^Bearer error="invalid_token", resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"$/,
    )
    assert.equal(idp.exchanges.at(-1)?.outcome, 'invalid_grant')
  })

  test('replay: the exchanged token the API received is refused by the gateway as an MCP token', async () => {
    await whoami(gateway, alice)
    const exchanged = String(api.seen.at(-1)?.authorization).slice('Bearer '.length)
    const exchanges = idp.exchanges.length
    await refused(gateway, api, exchanged, 401, /error="invalid_token"/)
    assert.equal(idp.exchanges.length, exchanges, 'nothing was exchanged for it')
  })

  test('refused by policy (an audience no rule allows, a scope the user lacks): 403 insufficient_scope; the API saw nothing', async () => {
    const bob = await idp.signIn('bob', 'openid mcp orders:read')
    for (const [exchange, error] of [
      [{ audience: BILLING }, 'invalid_target'],
      [{ scope: 'orders:write' }, 'invalid_scope'],
    ] as const) {
      const other = await startExchangeGateway(idp, api, exchange)
      try {
        await refused(other, api, bob, 403, /^Bearer error="insufficient_scope", resource_metadata="/)
        assert.equal(idp.exchanges.at(-1)?.outcome, error)
      } finally {
        await other.close()
      }
    }
  })

  test("Entra's on-behalf-of profile: the API named by <audience>/.default in the scope", async () => {
    const other = await startExchangeGateway(idp, api, {
      profile: 'entra_obo',
      audience: undefined,
      scope: `${ORDERS}/.default`,
    })
    try {
      const said = await whoami(other, alice)
      assert.equal(said.aud, ORDERS)
      assert.equal(said.sub, 'alice')
      assert.equal(idp.exchanges.at(-1)?.grant, 'on-behalf-of')
    } finally {
      await other.close()
    }
  })
})

describe('gateway exchange mode: the configuration', () => {
  let idp: ExchangeIdp
  let api: ExchangeApi
  before(async () => {
    idp = await startExchangeIdp({ mcp: { resource: MCP, scopes: ['mcp'] }, clients: [GATEWAY], rules: [] })
    api = await startExchangeApi(ORDERS)
  })
  after(async () => {
    await api.close()
    await idp.close()
  })

  const refusedConfig = async (exchange: Record<string, unknown>, message: string) =>
    assert.rejects(startExchangeGateway(idp, api, exchange), (error: Error) => {
      assert.equal(error.message, message)
      return true
    })

  test('what the mode needs, and unknown keys, stop the start with the setting named', async () => {
    await refusedConfig({ client_id: undefined }, 'upstream_credentials.exchange.client_id is required')
    await refusedConfig(
      { profile: 'entra_obo', scope: undefined },
      'upstream_credentials.exchange.scope is required with profile entra_obo, e.g. api://<app id>/.default',
    )
    await refusedConfig(
      { client_auth: 'private_key_jwt' },
      'upstream_credentials.exchange.private_key_file is required with client_auth private_key_jwt',
    )
    await refusedConfig(
      { issuer: undefined },
      'upstream_credentials.exchange needs issuer or token_endpoint: no embedded authorization server runs to exchange at',
    )
    await assert.rejects(startExchangeGateway(idp, api, { audiences: [ORDERS] }), /unknown setting audiences/)
    await assert.rejects(
      startExchangeGateway(idp, api, { profile: 'obo' }),
      /"obo" must be rfc8693 or entra_obo/,
    )
  })
})

describe('gateway exchange mode: the provider down', () => {
  let idp: ExchangeIdp
  let api: ExchangeApi
  before(async () => {
    idp = await startExchangeIdp({
      mcp: { resource: MCP, scopes: ['mcp', 'orders:read'] },
      clients: [GATEWAY],
      rules: [{ client: GATEWAY.id, audience: ORDERS, scopes: ['orders:read'] }],
    })
    api = await startExchangeApi(ORDERS)
    api.trust(idp.issuer)
  })
  after(async () => {
    await api.close()
    await idp.close()
  })

  test('a token endpoint that does not answer at the start: the gateway does not start', async () => {
    const closed = createServer().listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const { port } = closed.address() as AddressInfo
    closed.close()
    await assert.rejects(
      startExchangeGateway(idp, api, { token_endpoint: `http://127.0.0.1:${port}/token` }),
      (error: unknown) => {
        assert.ok(error instanceof OnBehalfOfError, String(error))
        assert.equal(error.code, 'provider_unavailable')
        assert.equal(
          error.message,
          `token endpoint http://127.0.0.1:${port}/token: connection refused (is the server running, and is the port right?)`,
        )
        return true
      },
    )
  })

  test('down after the start: 503 with Retry-After; the API saw nothing', async () => {
    // A second provider process for the exchange only, stopped once the gateway runs.
    const exchanger = await startExchangeIdp({
      mcp: { resource: MCP, scopes: ['mcp', 'orders:read'] },
      clients: [GATEWAY],
      rules: [],
    })
    const gateway = await startExchangeGateway(idp, api, { issuer: exchanger.issuer })
    try {
      await exchanger.close()
      const token = await idp.signIn('erin', 'openid mcp orders:read')
      const response = await refused(gateway, api, token, 503, undefined)
      assert.equal(response.headers.get('retry-after'), '5')
      assert.equal(response.headers.get('www-authenticate'), null)
    } finally {
      await gateway.close()
    }
  })
})

describe('gateway exchange mode: an expired client token', () => {
  test('within the guard’s clock skew, the provider refuses it: 401 invalid_token, the API saw nothing', async () => {
    const idp = await startExchangeIdp({
      mcp: { resource: MCP, scopes: ['mcp', 'orders:read'] },
      clients: [GATEWAY],
      rules: [{ client: GATEWAY.id, audience: ORDERS, scopes: ['orders:read'] }],
      accessTokenTtl: 1,
    })
    const api = await startExchangeApi(ORDERS)
    api.trust(idp.issuer)
    const gateway = await startExchangeGateway(idp, api)
    try {
      const token = await idp.signIn('fred', 'openid mcp orders:read')
      await sleep(2100)
      await refused(gateway, api, token, 401, /^Bearer error="invalid_token"/)
      assert.deepEqual(
        idp.exchanges.map((e) => e.outcome),
        ['invalid_request'],
      )
    } finally {
      await gateway.close()
      await api.close()
      await idp.close()
    }
  })
})
