import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import type { Gateway } from '../../src/gateway/server.ts'
import { token } from '../auth-server/harness.ts'
import { asHarness, gatehouse, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { connectClient, INITIALIZE, logCapture, postRpc } from '../support/gateway-harness.ts'
import { scanForSecrets } from '../support/log_scanner.ts'
import {
  authorizationRequest,
  follow,
  openPage,
  startAuthorization,
  startClientCallback,
  submit,
} from '../support/login-flow.ts'

const PASSWORD = 'log-scan password 7f3a9c'
const SECRET = 'log-scan-server-secret-0123456789abcdef'
const WEB_CLIENT = 'web-app'

describe('gatehouse serve at debug level: no credential reaches the log', () => {
  let dataDir: string
  let gateway: Gateway
  let callback: Awaited<ReturnType<typeof startClientCallback>>
  const log = logCapture()
  const seen: string[] = []

  before(async () => {
    dataDir = await tempDir('log-scan')
    const added = await gatehouse(['users', 'add', 'alice', '--data-dir', dataDir], `${PASSWORD}\n`)
    assert.equal(added.code, 0, added.stderr)
    callback = await startClientCallback()
    gateway = await startEmbeddedGateway(
      { dataDir },
      {
        secret: SECRET,
        authorization_server: {
          clients: [
            {
              client_id: WEB_CLIENT,
              application_type: 'web',
              redirect_uris: [callback.redirectUri],
              token_endpoint_auth_method: 'none',
            },
          ],
        },
      },
      log,
    )
  })
  after(async () => {
    await callback?.close()
    await gateway?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('the scanner finds each kind of credential (so a clean scan means something)', () => {
    const planted = [
      '{"url":"/mcp?access_token=abc"}',
      '{"url":"/interaction/callback/corp?code=xyz&state=s1"}',
      '{"headers":{"proxy-authorization":"x"}}',
      '{"headers":{"dpop":"x"}}',
      '"Bearer abcdefghijkl"',
      '_session=abcdef',
      '__Host-gatehouse-session=abcdef',
      'gatehouse-login=abcdef',
      'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln',
      `${SECRET}`,
    ]
    for (const line of planted) assert.equal(scanForSecrets([line], [SECRET]).length > 0, true, line)
    assert.deepEqual(scanForSecrets(['{"url":"/mcp?access_token=[redacted]","dpop":"[redacted]"}']), [])
  })

  it('signs in, gets a token, calls a tool, and is refused with tokens in every place, logging none of it', async () => {
    const h = asHarness(gateway)
    const request = authorizationRequest(h, WEB_CLIENT, callback.redirectUri, 'mcp')
    const { jar, page } = await startAuthorization(request)
    const signedIn = await submit(`${page.url}/login`, jar, {
      csrf: page.csrf,
      username: 'alice',
      password: PASSWORD,
    })
    const consent = await openPage((await follow(signedIn, jar, h.origin)).url, jar)
    const approved = await follow(
      await submit(`${consent.url}/consent`, jar, { csrf: consent.csrf, decision: 'approve' }),
      jar,
      h.origin,
    )
    const code = new URL(approved.headers.get('location') ?? '').searchParams.get('code') as string
    const tokens = await token(h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: callback.redirectUri,
      code_verifier: request.pkce.verifier,
      client_id: WEB_CLIENT,
      resource: gateway.resource,
    })
    assert.equal(tokens.response.status, 200)
    const accessToken = tokens.body.access_token as string
    seen.push(accessToken, code, request.state, request.pkce.verifier)

    const client = await connectClient(gateway.resource, accessToken)
    await client.callTool({ name: 'echo', arguments: { message: 'log scan' } })
    await client.close()

    const refusals = [
      postRpc(`${gateway.resource}?access_token=${accessToken}`, INITIALIZE),
      postRpc(gateway.resource, INITIALIZE, { 'proxy-authorization': `Bearer ${accessToken}` }),
      postRpc(gateway.resource, INITIALIZE, { authorization: `DPoP ${accessToken}`, dpop: accessToken }),
      postRpc(gateway.resource, INITIALIZE, { authorization: `Bearer ${accessToken}x` }),
      postRpc(gateway.resource, INITIALIZE, { cookie: jar.header() }),
      fetch(`${h.origin}/interaction/callback/corp?code=${code}&state=${request.state}`),
      fetch(`${h.origin}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${WEB_CLIENT}:${PASSWORD}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: accessToken }),
      }),
    ]
    for (const response of await Promise.all(refusals)) {
      assert.ok(response.status >= 400, `${response.url}: ${response.status}`)
      await response.arrayBuffer()
    }
    assert.ok(log.lines.length > 20, 'debug logging captured the flows')
    assert.ok(log.lines.some((line) => line.includes('access_token=[redacted]')))
    // An interaction cookie's value is the interaction id, which is in the page URLs anyway; its signature is not.
    const cookieValues = jar
      .header()
      .split('; ')
      .filter((pair) => !/^gatehouse-(interaction|resume)=/.test(pair))
      .map((pair) => pair.slice(pair.indexOf('=') + 1))
    assert.deepEqual(scanForSecrets(log.lines, [SECRET, PASSWORD, ...seen, ...cookieValues]), [])
  })
})
