/**
 * The server behind the guard, end to end, with no identity provider on the internet: the test plays one on
 * loopback (its metadata, its public key, and access tokens signed with its private key).
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { guardOptionsFromEnv } from 'mcp-gatehouse/guard'
import { type RunningServer, startServer } from '../src/server.ts'

interface TestIssuer {
  issuer: string
  /** An access token for `audience`, as the provider would issue it after a sign-in. */
  token(audience: string): Promise<string>
  close(): Promise<void>
}

async function startTestIssuer(): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'test', alg: 'ES256', use: 'sig' }
  const http: Server = createServer()
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
  const documents: Record<string, unknown> = {
    '/.well-known/oauth-authorization-server': { issuer, jwks_uri: `${issuer}/jwks` },
    '/jwks': { keys: [jwk] },
  }
  http.on('request', (req, res) => {
    const document = documents[req.url ?? '']
    res.writeHead(document ? 200 : 404, { 'content-type': 'application/json' })
    res.end(JSON.stringify(document ?? { error: 'not_found' }))
  })
  return {
    issuer,
    token: (audience) =>
      new SignJWT({ client_id: 'test-client', scope: 'mcp' })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'test' })
        .setIssuer(issuer)
        .setSubject('alice')
        .setAudience(audience)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey),
    close: () => new Promise<void>((resolve) => http.close(() => resolve())),
  }
}

describe('the MCP server behind the guard', () => {
  let idp: TestIssuer
  let server: RunningServer

  before(async () => {
    idp = await startTestIssuer()
    server = await startServer({
      port: 0,
      guardOptions: (url) => guardOptionsFromEnv({ OAUTH_ISSUER_URL: idp.issuer }, url),
    })
  })
  after(async () => {
    await server?.close()
    await idp?.close()
  })

  it('answers 401 without a token, pointing to its Protected Resource Metadata', async () => {
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    })
    assert.equal(response.status, 401)
    const challenge = response.headers.get('www-authenticate') ?? ''
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(challenge)?.[1]
    assert.equal(metadataUrl, new URL('/.well-known/oauth-protected-resource/mcp', server.url).href)

    const metadata = await (await fetch(metadataUrl)).json()
    assert.equal(metadata.resource, server.url)
    assert.deepEqual(metadata.authorization_servers, [idp.issuer])
  })

  it('runs a tool for a client with a token of the provider, which names the caller', async () => {
    const token = await idp.token(server.url)
    const transport = new StreamableHTTPClientTransport(new URL(server.url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    })
    const client = new Client({ name: 'test', version: '1.0.0' })
    await client.connect(transport)
    try {
      const result = await client.callTool({ name: 'whoami' })
      assert.equal((result.structuredContent as { subject?: string }).subject, 'alice')
    } finally {
      await client.close()
    }
  })

  it('refuses a token issued for another server', async () => {
    const response = await fetch(server.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await idp.token('https://other.example/mcp')}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    })
    assert.equal(response.status, 401)
    assert.match(response.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
  })
})
