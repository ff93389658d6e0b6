import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { createLocalUser } from '../../src/auth-server/index.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import { browse, token } from '../auth-server/harness.ts'
import { asHarness, gatehouse, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { connectClient } from '../support/gateway-harness.ts'
import {
  authorizationRequest,
  follow,
  openPage,
  startAuthorization,
  startClientCallback,
  submit,
} from '../support/login-flow.ts'

const PASSWORD = 'correct horse battery staple'
// A web client: oidc-provider prompts native clients every time, but reuses a web client's grant silently.
const WEB_CLIENT = 'web-app'

describe('gatehouse users add, then a local sign-in through the gateway; gatehouse consents revoke', () => {
  let dataDir: string
  let gateway: Gateway
  let callback: Awaited<ReturnType<typeof startClientCallback>>

  before(async () => {
    dataDir = await tempDir('accounts')
    const added = await gatehouse(['users', 'add', 'Alice', '--data-dir', dataDir], `${PASSWORD}\n`)
    assert.equal(added.code, 0, added.stderr)
    assert.match(added.stdout, /^created the local user alice \(/)
    callback = await startClientCallback()
    gateway = await startEmbeddedGateway(
      { dataDir },
      {
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
    )
  })
  after(async () => {
    await callback?.close()
    await gateway?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('refuses a second account with the same name in one line', async () => {
    const again = await gatehouse(['users', 'add', 'alice', '--data-dir', dataDir], `${PASSWORD}\n`)
    assert.equal(again.code, 1)
    assert.equal(again.stderr, 'gatehouse: user alice already exists\n')
  })

  it('signs alice in with her password, asks consent once, and the token calls a tool', async () => {
    const h = asHarness(gateway)
    const clientId = WEB_CLIENT
    const request = authorizationRequest(h, clientId, callback.redirectUri, 'mcp')
    const { jar, page } = await startAuthorization(request)
    const signedIn = await submit(`${page.url}/login`, jar, {
      csrf: page.csrf,
      username: 'alice',
      password: PASSWORD,
    })
    const consentAt = await follow(signedIn, jar, h.origin)
    const consent = await openPage(consentAt.url, jar)
    assert.match(consent.html, /Allow access\?/)
    const approved = await follow(
      await submit(`${consent.url}/consent`, jar, { csrf: consent.csrf, decision: 'approve' }),
      jar,
      h.origin,
    )
    const code = codeFrom(approved, request.state)
    const tokens = await token(h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: callback.redirectUri,
      code_verifier: request.pkce.verifier,
      client_id: clientId,
      resource: gateway.resource,
    })
    assert.equal(tokens.response.status, 200)
    const client = await connectClient(gateway.resource, tokens.body.access_token as string)
    try {
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'alice' } })
      assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: alice' }])
    } finally {
      await client.close()
    }

    const remembered = authorizationRequest(h, clientId, callback.redirectUri, 'mcp')
    codeFrom(await browse(remembered.url, jar), remembered.state)

    const revoked = await gatehouse(['consents', 'revoke', 'alice', clientId, '--data-dir', dataDir])
    assert.equal(revoked.code, 0, revoked.stderr)
    assert.equal(revoked.stdout, `revoked the consent of alice for ${clientId}\n`)
    // The browser session still holds the grant: the revoked consent must be asked again all the same.
    const asked = await browse(authorizationRequest(h, clientId, callback.redirectUri, 'mcp').url, jar)
    assert.equal(asked.status, 200)
    assert.match(await asked.text(), /Allow access\?/)
  })

  it('lists the account', async () => {
    const listed = await gatehouse(['users', 'list', '--data-dir', dataDir])
    assert.equal(listed.code, 0, listed.stderr)
    assert.match(
      listed.stdout,
      /^USERNAME +ID +KIND +CREATED +DISABLED\nalice +[0-9a-f-]{36} +local +\d{4}-\S+Z\n/,
    )
  })
})

describe('gatehouse serve: a tool scope is held only by the users scope_grants names', () => {
  let dataDir: string
  let gateway: Gateway
  let callback: Awaited<ReturnType<typeof startClientCallback>>

  before(async () => {
    dataDir = await tempDir('scope-grants')
    callback = await startClientCallback()
    gateway = await startEmbeddedGateway(
      { dataDir },
      {
        tools: { echo: { scopes: ['files:write'] } },
        authorization_server: {
          scope_grants: [{ scopes: ['files:write'], users: ['bob'] }],
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
    )
    const store = gateway.authorizationServer?.store ?? assert.fail('no embedded authorization server')
    for (const name of ['alice', 'bob']) await createLocalUser(store, name, PASSWORD)
  })
  after(async () => {
    await callback?.close()
    await gateway?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  /** Signs `username` in asking for the tool's scope; returns what the consent page refused and the token. */
  async function signIn(username: string) {
    const h = asHarness(gateway)
    const request = authorizationRequest(h, WEB_CLIENT, callback.redirectUri, 'mcp files:write')
    const { jar, page } = await startAuthorization(request)
    const signedIn = await submit(`${page.url}/login`, jar, { csrf: page.csrf, username, password: PASSWORD })
    const consent = await openPage((await follow(signedIn, jar, h.origin)).url, jar)
    const refused = [...consent.html.matchAll(/<code class="refused-scope">([^<]+)<\/code>/g)].map(
      (m) => m[1],
    )
    const approved = await follow(
      await submit(`${consent.url}/consent`, jar, { csrf: consent.csrf, decision: 'approve' }),
      jar,
      h.origin,
    )
    const tokens = await token(h, {
      grant_type: 'authorization_code',
      code: codeFrom(approved, request.state),
      redirect_uri: callback.redirectUri,
      code_verifier: request.pkce.verifier,
      client_id: WEB_CLIENT,
      resource: gateway.resource,
    })
    assert.equal(tokens.response.status, 200)
    return { refused, scope: tokens.body.scope, accessToken: tokens.body.access_token as string }
  }

  it('alice asks for files:write and is told she does not hold it; her token lacks it and the tool call is 403', async () => {
    const alice = await signIn('alice')
    assert.deepEqual(alice.refused, ['files:write'])
    assert.equal(alice.scope, 'mcp')
    const client = await connectClient(gateway.resource, alice.accessToken)
    try {
      await assert.rejects(
        client.callTool({ name: 'echo', arguments: { message: 'alice' } }),
        (error: Error) => {
          assert.equal((error as Error & { code?: number }).code, 403)
          assert.match(error.message, /insufficient_scope/)
          return true
        },
      )
    } finally {
      await client.close()
    }
  })

  it('bob, whom the rule names, gets files:write and runs the tool', async () => {
    const bob = await signIn('bob')
    assert.deepEqual(bob.refused, [])
    assert.equal(bob.scope, 'mcp files:write')
    const client = await connectClient(gateway.resource, bob.accessToken)
    try {
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'bob' } })
      assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: bob' }])
    } finally {
      await client.close()
    }
  })
})

/** The code of a redirect to the client, after checking it is the answer to this request. */
function codeFrom(response: Response, state: string): string {
  assert.equal(response.status, 303)
  const location = new URL(response.headers.get('location') ?? '')
  assert.equal(location.searchParams.get('state'), state)
  return location.searchParams.get('code') ?? assert.fail('no code in the redirect')
}
