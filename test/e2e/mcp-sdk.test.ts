import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from '@modelcontextprotocol/client'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { decodeJwt } from 'jose'
import { type ProtectedServer, startProtectedServer } from '../../examples/protected-server.ts'
import { GUARD_ERRORS, type GuardErrorCode, guardOptionsFromEnv } from '../../src/guard/index.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

const SCOPE = 'mcp:tools'
const OTHER_RESOURCE = 'https://other.example/api'

interface Seen {
  status: number
  headers: Headers
}

describe('the example MCP server behind the guard, with the MCP SDK clients', () => {
  let idp: TestIdp
  let untrustedIdp: TestIdp
  let server: ProtectedServer
  let metadataUrl: string

  before(async () => {
    server = await startProtectedServer({
      port: 0,
      guardOptions: async (url) => {
        idp = await startTestIdp({ resources: { [url]: SCOPE, [OTHER_RESOURCE]: SCOPE } })
        untrustedIdp = await startTestIdp({ resources: { [url]: SCOPE } })
        return { ...guardOptionsFromEnv({ OAUTH_ISSUER_URL: idp.issuer }, url), scopes: [SCOPE] }
      },
    })
    metadataUrl = `${new URL(server.url).origin}/.well-known/oauth-protected-resource/mcp`
  })
  after(async () => {
    await server?.close()
    await idp?.close()
    await untrustedIdp?.close()
  })

  // Keeps what the SDK client actually received, so assertions are on the wire and not on its error text.
  function recordingFetch(responses: Seen[]): typeof fetch {
    return async (input, init) => {
      const response = await fetch(input, init)
      responses.push({ status: response.status, headers: response.headers })
      return response
    }
  }

  /** Both SDK clients: the tools are listed, and whoami reports the identity the guard verified from `token`. */
  async function expectToolsAndIdentity(client: Client | ClientV2, token: string): Promise<void> {
    const { tools } = await client.listTools()
    assert.deepEqual(tools.map((tool) => tool.name).sort(), ['echo', 'whoami'])
    const whoami = await client.callTool({ name: 'whoami', arguments: {} })
    assert.deepEqual(whoami.structuredContent, {
      subject: decodeJwt(token).sub,
      clientId: 'test-client',
      scopes: [SCOPE],
    })
  }

  async function connectV1(token: string | undefined, responses: Seen[] = []): Promise<Client> {
    const client = new Client({ name: 'e2e', version: '1.0.0' })
    const transport = new StreamableHTTPClientTransport(new URL(server.url), {
      fetch: recordingFetch(responses),
      ...(token ? { requestInit: { headers: { authorization: `Bearer ${token}` } } } : {}),
    })
    await client.connect(transport)
    return client
  }

  function callWhoami(token: string): Promise<Response> {
    return fetch(server.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami' } }),
    })
  }

  test('without a token the v1 client gets a 401 whose challenge points to the metadata', async () => {
    const responses: Seen[] = []
    await assert.rejects(connectV1(undefined, responses), { code: 401 })
    const [response] = responses
    assert.equal(response?.status, 401)
    assert.equal(
      response.headers.get('www-authenticate'),
      `Bearer scope="${SCOPE}", resource_metadata="${metadataUrl}"`,
    )
  })

  test('the Protected Resource Metadata names the MCP URL and the trusted issuer', async () => {
    const response = await fetch(metadataUrl)
    assert.equal(response.status, 200)
    const metadata = (await response.json()) as Record<string, unknown>
    assert.equal(metadata.resource, server.url)
    assert.deepEqual(metadata.authorization_servers, [idp.issuer])
    assert.deepEqual(metadata.scopes_supported, [SCOPE])
  })

  test('with a token the v1 client lists the tools and whoami sees the verified identity', async () => {
    const token = await idp.issueToken({ resource: server.url, scope: SCOPE })
    const client = await connectV1(token)
    try {
      await expectToolsAndIdentity(client, token)
      const echo = await client.callTool({ name: 'echo', arguments: { text: 'hello' } })
      assert.deepEqual(echo.content, [{ type: 'text', text: 'hello' }])
    } finally {
      await client.close()
    }
  })

  test('with a token the v2 client lists the tools and whoami sees the verified identity', async () => {
    const token = await idp.issueToken({ resource: server.url, scope: SCOPE })
    const client = new ClientV2({ name: 'e2e-v2', version: '1.0.0' })
    await client.connect(
      new TransportV2(new URL(server.url), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    )
    try {
      await expectToolsAndIdentity(client, token)
    } finally {
      await client.close()
    }
  })

  test('a direct tools/call with a valid token runs the tool (the control for the refusals below)', async () => {
    const before = server.toolCalls.whoami
    const response = await callWhoami(await idp.issueToken({ resource: server.url, scope: SCOPE }))
    assert.equal(response.status, 200)
    await response.text()
    assert.equal(server.toolCalls.whoami, before + 1)
  })

  const refused: { name: string; code: GuardErrorCode; token: () => Promise<string> }[] = [
    {
      name: 'an expired token',
      code: 'token_expired',
      token: () => {
        const now = Math.floor(Date.now() / 1000)
        return idp.sign({
          iss: idp.issuer,
          sub: 'test-client',
          client_id: 'test-client',
          aud: server.url,
          scope: SCOPE,
          iat: now - 600,
          exp: now - 300,
          jti: 'expired',
        })
      },
    },
    {
      name: 'a token for another resource of the same provider',
      code: 'audience_mismatch',
      token: () => idp.issueToken({ resource: OTHER_RESOURCE, scope: SCOPE }),
    },
    {
      name: 'a token from a provider the server does not trust',
      code: 'issuer_untrusted',
      token: () => untrustedIdp.issueToken({ resource: server.url, scope: SCOPE }),
    },
    { name: 'a malformed token', code: 'token_malformed', token: async () => 'not.a.jwt' },
  ]

  for (const { name, code, token } of refused) {
    test(`refuses ${name} with 401 ${code}, and no tool runs`, async () => {
      const bad = await token()
      const challenge =
        `Bearer error="invalid_token", error_description="${GUARD_ERRORS[code].description}", ` +
        `scope="${SCOPE}", resource_metadata="${metadataUrl}"`
      const responses: Seen[] = []
      await assert.rejects(connectV1(bad, responses), { code: 401 })
      assert.equal(responses[0]?.headers.get('www-authenticate'), challenge)

      const calls = { ...server.toolCalls }
      const response = await callWhoami(bad)
      assert.equal(response.status, 401)
      assert.equal(response.headers.get('www-authenticate'), challenge)
      assert.deepEqual(await response.json(), {
        error: 'invalid_token',
        error_description: GUARD_ERRORS[code].description,
      })
      assert.deepEqual(server.toolCalls, calls)
    })
  }
})
