import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import {
  Client,
  type OAuthDiscoveryState,
  StreamableHTTPClientTransport,
  UnauthorizedError,
} from '@modelcontextprotocol/client'
import { decodeJwt } from 'jose'
import { createLocalUser } from '../../src/auth-server/index.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import { browse, CookieJar } from '../auth-server/harness.ts'
import { startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { follow, openPage, startClientCallback, submit } from '../support/login-flow.ts'
import { InMemoryOAuthProvider } from '../support/oauth-client-provider.ts'
import { type Exchange, recordingFetch } from '../support/recording-fetch.ts'

const PASSWORD = 'correct horse battery staple'

/** The v2 client binds the callback leg to the authorization server it discovered: it keeps that state. */
class V2OAuthProvider extends InMemoryOAuthProvider {
  #discovery: OAuthDiscoveryState | undefined
  discoveryState() {
    return this.#discovery
  }
  saveDiscoveryState(state: OAuthDiscoveryState) {
    this.#discovery = state
  }
}

describe('step-up with the MCP SDK v2 client, registered through DCR with a narrower scope than a tool needs', () => {
  let dataDir: string
  let gateway: Gateway
  let callback: Awaited<ReturnType<typeof startClientCallback>>
  let issuer: string

  before(async () => {
    dataDir = await tempDir('step-up')
    callback = await startClientCallback()
    gateway = await startEmbeddedGateway(
      { dataDir },
      {
        tools: { 'get-sum': { scopes: ['math'] } },
        authorization_server: { scope_grants: [{ scopes: ['math'], users: ['alice'] }] },
      },
    )
    issuer = new URL(gateway.resource).origin
    const store = gateway.authorizationServer?.store ?? assert.fail('no embedded authorization server')
    await createLocalUser(store, 'alice', PASSWORD)
  })
  after(async () => {
    await callback?.close()
    await gateway?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  /** The user's part, scripted: sign in as alice in a fresh browser, approve, return the redirect to the client. */
  async function signInAndApprove(url: URL): Promise<URL> {
    const jar = new CookieJar()
    const landed = await browse(url.href, jar)
    const location = landed.headers.get('location')
    if (location) throw new Error(`the authorization request ended without a page: ${location}`)
    const page = await openPage(landed.url, jar)
    const signedIn = await submit(`${page.url}/login`, jar, {
      csrf: page.csrf,
      username: 'alice',
      password: PASSWORD,
    })
    const consent = await openPage((await follow(signedIn, jar, issuer)).url, jar)
    assert.match(consent.html, /Allow access\?/)
    const approved = await follow(
      await submit(`${consent.url}/consent`, jar, { csrf: consent.csrf, decision: 'approve' }),
      jar,
      issuer,
    )
    return new URL(approved.headers.get('location') ?? assert.fail('no redirect to the client'))
  }

  /** The redirect the provider's last authorization led to (code, iss), after checking its `state`. */
  async function answerOf(provider: V2OAuthProvider): Promise<URLSearchParams> {
    const arrived = await (provider.callback ?? assert.fail('the client did not ask for authorization'))
    assert.equal(arrived.searchParams.get('state'), provider.sentState)
    assert.ok(arrived.searchParams.get('code'), `no code: ${arrived.href}`)
    return arrived.searchParams
  }

  test('403 insufficient_scope on the tool, re-authorization with mcp math, and the call succeeds', async () => {
    const metadata = await fetch(`${issuer}/.well-known/oauth-protected-resource/mcp`)
    // Basic use only (MCP RS-7): the tool's scope comes with its challenge.
    assert.deepEqual(((await metadata.json()) as { scopes_supported: string[] }).scopes_supported, ['mcp'])

    const provider = new V2OAuthProvider({ redirectUrl: callback.redirectUri, authorize: signInAndApprove })
    const exchanges: Exchange[] = []
    const connect = async () => {
      const transport = new StreamableHTTPClientTransport(new URL(gateway.resource), {
        authProvider: provider,
        fetch: recordingFetch(exchanges),
      })
      const client = new Client({ name: 'gatehouse-step-up', version: '2.0.0' })
      await client.connect(transport)
      return { client, transport }
    }
    await assert.rejects(connect(), UnauthorizedError)
    const registration = provider.clientInformation() as { client_id: string; scope?: string }
    assert.equal(provider.authorizationUrl?.searchParams.get('scope'), 'mcp offline_access')
    const first = new StreamableHTTPClientTransport(new URL(gateway.resource), { authProvider: provider })
    await first.finishAuth(await answerOf(provider))
    await first.close()
    assert.equal(decodeJwt(provider.tokens()?.access_token ?? '').scope, 'mcp')

    const { client, transport } = await connect()
    const called = exchanges.length
    const before = provider.authorizationUrl
    await assert.rejects(client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } }), UnauthorizedError)
    // The tool answered 403 and the client asked again, for the wider scope, as the same registered client.
    assert.ok(exchanges.slice(called).some((e) => e.url === gateway.resource && e.status === 403))
    const stepUp = provider.authorizationUrl ?? assert.fail('no step-up authorization')
    assert.notEqual(stepUp, before)
    assert.deepEqual(stepUp.searchParams.get('scope')?.split(' ').sort(), ['math', 'mcp', 'offline_access'])
    assert.equal(stepUp.searchParams.get('client_id'), registration.client_id)
    await transport.finishAuth(await answerOf(provider))
    assert.equal(decodeJwt(provider.tokens()?.access_token ?? '').scope, 'mcp math')

    const sum = await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } })
    assert.deepEqual(sum.content, [{ type: 'text', text: 'The sum of 2 and 3 is 5.' }])
    await client.close()
  })
})
