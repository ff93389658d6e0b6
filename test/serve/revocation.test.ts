import assert from 'node:assert/strict'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'
import { createLocalUser } from '../../src/auth-server/index.ts'
import { REVOCATION_CACHE_SECONDS } from '../../src/cli/revocation_check.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import { openStore } from '../../src/storage/index.ts'
import { registerPublicClient, token } from '../auth-server/harness.ts'
import { asHarness, gatehouse, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import {
  authorizationRequest,
  follow,
  openPage,
  startAuthorization,
  startClientCallback,
  submit,
} from '../support/login-flow.ts'

const PASSWORD = 'correct horse battery staple'
const NEW_PASSWORD = 'a brand new passphrase'
const CLIENT = 'web-app'
const OTHER_CLIENT = 'other-app'
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin']

interface Tokens {
  access: string
  refresh: string
}

describe('revocation: consents/grants revoke, clients revoke, users disable/delete/passwd end refresh and access tokens', () => {
  let dataDir: string
  let configPath: string
  let gateway: Gateway
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let callback: Awaited<ReturnType<typeof startClientCallback>>
  /** When each access token last reached the upstream: the gateway's cached answer lasts from there. */
  const lastAllowed = new Map<string, number>()

  before(async () => {
    dataDir = await tempDir('revocation')
    const store = await openStore(undefined, { dataDir })
    for (const name of USERS) await createLocalUser(store, name, PASSWORD)
    await store.close()
    ;[upstream, callback] = await Promise.all([startOddUpstream(), startClientCallback()])
    const client = (client_id: string) => ({
      client_id,
      application_type: 'web',
      redirect_uris: [callback.redirectUri],
      token_endpoint_auth_method: 'none',
    })
    const file = { authorization_server: { clients: [client(CLIENT), client(OTHER_CLIENT)] } }
    // The admin commands read the configuration gatehouse serve reads: its declared clients.
    configPath = join(dataDir, 'gatehouse.yaml')
    await writeFile(configPath, stringify(file))
    gateway = await startEmbeddedGateway(
      { dataDir, upstream: upstream.url('record'), command: undefined },
      file,
    )
  })
  after(async () => {
    await callback?.close()
    await gateway?.close()
    await upstream?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  /** The login and consent pages as a browser goes through them: the code's response, or the refusal. */
  async function signIn(username: string, password = PASSWORD, clientId = CLIENT) {
    const h = asHarness(gateway)
    const request = authorizationRequest(h, clientId, callback.redirectUri, 'mcp')
    const { jar, page } = await startAuthorization(request)
    const signedIn = await submit(`${page.url}/login`, jar, { csrf: page.csrf, username, password })
    if (signedIn.status !== 303) return { refused: signedIn, tokens: undefined }
    const next = await follow(signedIn, jar, h.origin)
    if (/<title>Sign in /.test(await next.clone().text())) return { refused: next, tokens: undefined }
    // A remembered consent goes straight back to the client.
    const approved =
      next.status === 303
        ? next
        : await follow(
            await submit(`${next.url}/consent`, jar, {
              csrf: (await openPage(next.url, jar)).csrf,
              decision: 'approve',
            }),
            jar,
            h.origin,
          )
    const code = new URL(approved.headers.get('location') ?? 'about:blank').searchParams.get('code')
    if (!code) return { refused: approved, tokens: undefined }
    const issued = await token(h, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: callback.redirectUri,
      code_verifier: request.pkce.verifier,
      client_id: clientId,
      resource: gateway.resource,
    })
    assert.equal(issued.response.status, 200, JSON.stringify(issued.body))
    const tokens = {
      access: issued.body.access_token as string,
      refresh: issued.body.refresh_token as string,
    }
    assert.ok(tokens.refresh, 'a refresh token is issued')
    return { refused: undefined, tokens }
  }

  async function tokensOf(username: string, clientId = CLIENT): Promise<Tokens> {
    return (await signIn(username, PASSWORD, clientId)).tokens ?? assert.fail(`${username} could not sign in`)
  }

  /** One MCP request with the access token: its response, and how many requests the upstream saw for it. */
  async function callMcp(access: string) {
    const seen = upstream.seen.length
    const response = await fetch(gateway.resource, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${access}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      }),
    })
    const body = await response.text()
    if (response.status === 200) lastAllowed.set(access, Date.now())
    return { response, body, reachedUpstream: upstream.seen.length - seen }
  }

  async function assertAllowed(access: string) {
    const { response, body, reachedUpstream } = await callMcp(access)
    assert.equal(response.status, 200, body)
    assert.equal(reachedUpstream, 1)
  }

  /** Once the gateway's cached answer has run out, the token is refused and the upstream sees nothing. */
  async function assertRevoked(access: string) {
    const wait = (lastAllowed.get(access) ?? 0) + REVOCATION_CACHE_SECONDS * 1000 + 50 - Date.now()
    if (wait > 0) await sleep(wait)
    const { response, body, reachedUpstream } = await callMcp(access)
    assert.equal(response.status, 401)
    assert.deepEqual(JSON.parse(body), {
      error: 'invalid_token',
      error_description: 'the access token has been revoked',
    })
    assert.match(response.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
    assert.equal(reachedUpstream, 0, 'the upstream saw nothing')
  }

  async function refresh(refreshToken: string, clientId = CLIENT) {
    return token(asHarness(gateway), {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
    })
  }

  async function assertRefreshRefused(refreshToken: string, clientId = CLIENT) {
    const refused = await refresh(refreshToken, clientId)
    assert.equal(refused.response.status, 400)
    assert.equal(refused.body.error, 'invalid_grant')
  }

  async function cli(...args: string[]) {
    const input = args[1] === 'passwd' ? `${NEW_PASSWORD}\n` : ''
    const run = await gatehouse([...args, '--data-dir', dataDir, '--config', configPath], input)
    assert.equal(run.code, 0, run.stderr)
    return run.stdout
  }

  it('consents revoke: refresh fails with invalid_grant, the access token gets token_revoked, other grants live on', async () => {
    const alice = await tokensOf('alice')
    const aliceElsewhere = await tokensOf('alice', OTHER_CLIENT)
    const bob = await tokensOf('bob')
    // A refresh before the revocation works and rotates: the rotated token is revoked too.
    const rotated = await refresh(alice.refresh)
    assert.equal(rotated.response.status, 200)
    const current = {
      access: rotated.body.access_token as string,
      refresh: rotated.body.refresh_token as string,
    }
    await assertAllowed(alice.access)
    await assertAllowed(current.access)

    assert.equal(
      await cli('consents', 'revoke', 'alice', CLIENT),
      `revoked the consent of alice for ${CLIENT}\n`,
    )

    await assertRefreshRefused(current.refresh)
    await assertRevoked(alice.access)
    await assertRevoked(current.access)
    // Her grant to the other client and bob's grant are not touched.
    await assertAllowed(aliceElsewhere.access)
    await assertAllowed(bob.access)
    assert.equal((await refresh(aliceElsewhere.refresh, OTHER_CLIENT)).response.status, 200)
    assert.equal((await refresh(bob.refresh)).response.status, 200)
    // Signing in again asks for consent again and gives tokens that work.
    await assertAllowed((await tokensOf('alice')).access)
  })

  it('users disable: no refresh, no access, no sign-in; users enable lets the user sign in again', async () => {
    const carol = await tokensOf('carol')
    const carolElsewhere = await tokensOf('carol', OTHER_CLIENT)
    await assertAllowed(carol.access)

    assert.equal(
      await cli('users', 'disable', 'carol'),
      'disabled carol: its sessions and tokens are revoked\n',
    )

    await assertRefreshRefused(carol.refresh)
    await assertRefreshRefused(carolElsewhere.refresh, OTHER_CLIENT)
    await assertRevoked(carol.access)
    await assertRevoked(carolElsewhere.access)
    const attempt = await signIn('carol')
    assert.equal(attempt.tokens, undefined, 'a disabled user gets no token')
    assert.equal(attempt.refused?.status, 200, 'back on the sign-in page, not a server error')
    assert.match(await attempt.refused.text(), /<title>Sign in /)
    assert.match(await cli('users', 'list'), /^carol +[0-9a-f-]{36} +local +\S+ +\d{4}-\S+Z$/m)
    const listed = JSON.parse(await cli('users', 'list', '--json')) as {
      username: string
      disabled_at: unknown
    }[]
    assert.match(String(listed.find((user) => user.username === 'carol')?.disabled_at), /^\d{4}-.*Z$/)

    assert.equal(await cli('users', 'enable', 'carol'), 'enabled carol\n')
    await assertAllowed((await tokensOf('carol')).access)
    await assertRevoked(carol.access)
  })

  it('users delete: no refresh, no access, no sign-in, and the consents are gone', async () => {
    const dave = await tokensOf('dave')
    await assertAllowed(dave.access)

    assert.equal(
      await cli('users', 'delete', 'dave'),
      'deleted dave with its consents: its sessions and tokens are revoked\n',
    )

    await assertRefreshRefused(dave.refresh)
    await assertRevoked(dave.access)
    const attempt = await signIn('dave')
    assert.equal(attempt.refused?.status, 401, 'the sign-in form refuses an unknown user')
    assert.doesNotMatch(await cli('users', 'list'), /^dave\t/m)
    const store = await openStore(undefined, { dataDir })
    try {
      assert.equal(await store.users.findByUsername('dave'), undefined)
      const audit = await store.audit.recent(20)
      const deleted = audit.find((event) => event.type === 'user.deleted')
      assert.equal(deleted?.data.username, 'dave')
      assert.deepEqual(await store.consents.listByUser(String(deleted?.data.userId)), [])
    } finally {
      await store.close()
    }
  })

  it('users passwd: the old password is refused, the new one accepted, and the old tokens end', async () => {
    const erin = await tokensOf('erin')
    await assertAllowed(erin.access)

    assert.equal(
      await cli('users', 'passwd', 'erin'),
      'set the password of erin: its sessions and tokens are revoked\n',
    )

    const old = await signIn('erin', PASSWORD)
    assert.equal(old.refused?.status, 401)
    assert.match(await old.refused.text(), /Wrong username or password/)
    const renewed = await signIn('erin', NEW_PASSWORD)
    assert.ok(renewed.tokens, 'the new password signs in')
    await assertAllowed(renewed.tokens.access)
    await assertRefreshRefused(erin.refresh)
    await assertRevoked(erin.access)
  })

  it('clients revoke: the refresh and access tokens of every user of a registered client end, other clients live on', async () => {
    const clientId = await registerPublicClient(asHarness(gateway), {
      redirect_uris: [callback.redirectUri],
      scope: 'mcp',
    })
    const alice = await tokensOf('alice', clientId)
    const bob = await tokensOf('bob', clientId)
    const bobElsewhere = await tokensOf('bob')
    await assertAllowed(alice.access)
    await assertAllowed(bob.access)
    const clients = JSON.parse(await cli('clients', 'list', '--json')) as Record<string, unknown>[]
    const registered = clients.find((client) => client.client_id === clientId)
    assert.equal(registered?.kind, 'registered')
    assert.equal(registered?.grants, 2)
    assert.deepEqual(
      clients.filter((client) => client.kind === 'static').map((client) => client.client_id),
      [CLIENT, OTHER_CLIENT],
    )
    assert.match(
      await cli('clients', 'list'),
      new RegExp(`^${clientId} +registered +test client \\w+ +\\S+Z +2$`, 'm'),
    )
    assert.match(await cli('clients', 'show', clientId), /^redirect_uris: +\["http:\/\/127\.0\.0\.1:/m)
    const grants = JSON.parse(await cli('grants', 'list', '--client', clientId, '--json')) as Record<
      string,
      unknown
    >[]
    assert.deepEqual(grants.map((grant) => [grant.user, grant.scopes, grant.grants]).sort(), [
      ['alice', ['mcp'], 1],
      ['bob', ['mcp'], 1],
    ])

    assert.equal(
      await cli('clients', 'revoke', clientId),
      `revoked the client ${clientId} and its 2 grant(s): its refresh tokens no longer work, its access tokens are refused by the gateway within seconds\n`,
    )

    for (const tokens of [alice, bob]) {
      const refused = await refresh(tokens.refresh, clientId)
      assert.equal(refused.response.status, 401, JSON.stringify(refused.body))
      assert.equal(refused.body.error, 'invalid_client')
    }
    // The refresh tokens themselves are gone, not only the client: nothing is left to redeem.
    const store = await openStore(undefined, { dataDir })
    try {
      const left = await store.listOidcRecords('RefreshToken')
      assert.deepEqual(
        left.filter((record) => record.clientId === clientId),
        [],
      )
      assert.ok(left.some((record) => record.clientId === CLIENT))
    } finally {
      await store.close()
    }
    await assertRevoked(alice.access)
    await assertRevoked(bob.access)
    await assertAllowed(bobElsewhere.access)
    assert.equal((await refresh(bobElsewhere.refresh)).response.status, 200)
    assert.equal(await cli('grants', 'list', '--client', clientId, '--json'), '[]\n')
    const gone = await gatehouse(['clients', 'show', clientId, '--data-dir', dataDir])
    assert.equal(gone.code, 1)
    assert.equal(gone.stderr, `gatehouse: no client ${clientId}: gatehouse clients list shows them\n`)
    const declared = await gatehouse([
      'clients',
      'revoke',
      CLIENT,
      '--data-dir',
      dataDir,
      '--config',
      configPath,
    ])
    assert.equal(declared.code, 1)
    assert.match(
      declared.stderr,
      /web-app is declared in the configuration: remove it from authorization_server\.clients/,
    )
  })

  it('grants revoke is consents revoke: the user approves the client again', async () => {
    await tokensOf('bob', OTHER_CLIENT)
    assert.match(
      await cli('grants', 'list', '--user', 'bob'),
      new RegExp(`^bob +${OTHER_CLIENT} +mcp +\\S+Z +1$`, 'm'),
    )
    assert.equal(
      await cli('grants', 'revoke', 'bob', OTHER_CLIENT),
      `revoked the consent of bob for ${OTHER_CLIENT}\n`,
    )
    assert.doesNotMatch(await cli('grants', 'list', '--user', 'bob'), new RegExp(OTHER_CLIENT))
  })

  it('admin commands name an unknown user and refuse a short password', async () => {
    const unknown = await gatehouse(['users', 'disable', 'nobody', '--data-dir', dataDir])
    assert.equal(unknown.code, 1)
    assert.equal(unknown.stderr, 'gatehouse: no user nobody: gatehouse users list shows them\n')
    const short = await gatehouse(['users', 'passwd', 'bob', '--data-dir', dataDir], 'short\n')
    assert.equal(short.code, 1)
    assert.equal(short.stderr, 'gatehouse: password must be at least 12 characters\n')
  })
})
