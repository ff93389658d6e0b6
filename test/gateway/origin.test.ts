import assert from 'node:assert/strict'
import { request } from 'node:http'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { authorize, register, token } from '../auth-server/harness.ts'
import { asHarness, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { INITIALIZE, postRpc, startIdp, startTestGateway, tokenFor } from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const FOREIGN = 'http://localhost:5173'
const CONFIGURED = 'https://app.example'

const PUBLIC_CLIENT = {
  client_name: 'origin test client',
  redirect_uris: ['http://127.0.0.1/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
}

/** A raw request with the `Host` header given (fetch sets its own). */
function withHost(url: string, host: string, method = 'GET', body?: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(url, { method, headers: { host, 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        text += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('gateway: Origin on the MCP endpoint', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let gateway: Gateway
  let bearer: Record<string, string>

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startOddUpstream()])
    gateway = await startTestGateway(
      idp,
      { upstream: upstream.url('record') },
      { allowed_origins: [CONFIGURED] },
    )
    bearer = { authorization: `Bearer ${await tokenFor(idp, 'alice', 'mcp')}` }
  })
  after(async () => {
    await gateway?.close()
    await upstream?.close()
    await idp?.close()
  })

  it('refuses a foreign Origin with 403 before the upstream sees anything, preflight included', async () => {
    const seen = upstream.seen.length
    const refused = await postRpc(gateway.resource, INITIALIZE, { ...bearer, origin: FOREIGN })
    assert.equal(refused.status, 403)
    assert.equal(refused.headers.get('access-control-allow-origin'), null)
    assert.match(((await refused.json()) as { error: { message: string } }).error.message, /origin/)
    const preflight = await fetch(gateway.resource, {
      method: 'OPTIONS',
      headers: { origin: FOREIGN, 'access-control-request-method': 'POST' },
    })
    assert.equal(preflight.status, 403)
    for (const method of ['GET', 'DELETE']) {
      const response = await fetch(gateway.resource, { method, headers: { ...bearer, origin: 'null' } })
      assert.equal(response.status, 403, method)
    }
    assert.equal(upstream.seen.length, seen)
  })

  it('serves the public origin and a configured one, echoing it in CORS, and forwards Origin upstream', async () => {
    for (const origin of [new URL(gateway.resource).origin, CONFIGURED]) {
      const response = await postRpc(gateway.resource, INITIALIZE, { ...bearer, origin })
      assert.equal(response.status, 200, origin)
      assert.equal(response.headers.get('access-control-allow-origin'), origin)
      assert.equal(response.headers.get('vary'), 'origin')
      assert.equal(upstream.seen.at(-1)?.origin, origin)
      const preflight = await fetch(gateway.resource, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST' },
      })
      assert.equal(preflight.status, 204)
      assert.equal(preflight.headers.get('access-control-allow-origin'), origin)
    }
  })

  it('serves a request without Origin (not a browser) without CORS headers', async () => {
    const response = await postRpc(gateway.resource, INITIALIZE, bearer)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('access-control-allow-origin'), null)
  })
})

describe('gatehouse serve --dev: Host and Origin on every endpoint', () => {
  let gateway: Gateway

  before(async () => {
    gateway = await startEmbeddedGateway({ dev: true })
  })
  after(() => gateway?.close())

  it('refuses a rebound host name on the MCP endpoint, the authorization server and discovery', async () => {
    const { origin, port } = new URL(gateway.resource)
    const rebound = `attacker.example:${port}`
    const rpc = JSON.stringify(INITIALIZE)
    for (const [path, method, body] of [
      ['/mcp', 'POST', rpc],
      ['/register', 'POST', JSON.stringify(PUBLIC_CLIENT)],
      ['/.well-known/oauth-authorization-server', 'GET', undefined],
      ['/authorize?client_id=x', 'GET', undefined],
    ] as const) {
      const refused = await withHost(`${origin}${path}`, rebound, method, body)
      assert.equal(refused.status, 403, path)
      assert.match(refused.body, /forbidden_host/)
    }
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, new URL(gateway.resource).host]) {
      const served = await withHost(`${origin}/.well-known/oauth-authorization-server`, host)
      assert.equal(served.status, 200, host)
    }
  })

  it('refuses a code redemption from a foreign Origin: no token, and the code still works without it', async () => {
    const h = asHarness(gateway)
    const { body } = await register(h, PUBLIC_CLIENT)
    const clientId = body.client_id as string
    const { code, redirectUri, verifier } = await authorize(h, clientId, { scope: 'mcp' })
    const params = {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      resource: gateway.resource,
    }
    const refused = await token(h, params, { origin: FOREIGN })
    assert.equal(refused.response.status, 403)
    assert.equal(refused.body.access_token, undefined)
    const redeemed = await token(h, params)
    assert.equal(redeemed.response.status, 200)
    assert.ok(redeemed.body.access_token)
  })
})

describe('gatehouse serve: cross-origin registration', () => {
  let gateway: Gateway
  let dataDir: string

  before(async () => {
    dataDir = await tempDir('origin')
    gateway = await startEmbeddedGateway({ dataDir }, { allowed_origins: [CONFIGURED] })
  })
  after(() => gateway?.close())

  const clientRows = () => {
    const db = new DatabaseSync(join(dataDir, 'gatehouse.db'), { readOnly: true })
    try {
      return (
        db.prepare("SELECT count(*) AS n FROM oidc_records WHERE model = 'Client'").get() as { n: number }
      ).n
    } finally {
      db.close()
    }
  }

  it('refuses POST /register from a foreign Origin with 403 and creates no client; a configured one registers', async () => {
    const h = asHarness(gateway)
    const before = clientRows()
    const refused = await register(h, PUBLIC_CLIENT, { origin: FOREIGN })
    assert.equal(refused.response.status, 403)
    assert.equal(refused.body.error, 'invalid_request')
    assert.equal(clientRows(), before)
    const allowed = await register(h, PUBLIC_CLIENT, { origin: CONFIGURED })
    assert.equal(allowed.response.status, 201)
    assert.equal(clientRows(), before + 1)
  })

  it('refuses the other state-changing endpoints from a foreign Origin', async () => {
    const { origin } = new URL(gateway.resource)
    for (const path of ['/token', '/revoke', '/introspect', '/par', '/logout', '/interaction/x/login']) {
      const response = await fetch(`${origin}${path}`, {
        method: 'POST',
        headers: { origin: FOREIGN, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'token=x',
      })
      assert.equal(response.status, 403, path)
    }
  })
})
