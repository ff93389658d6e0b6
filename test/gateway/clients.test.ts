import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { getCACertificates, setDefaultCACertificates } from 'node:tls'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  AUDIENCE,
  EVERYTHING_BIN,
  INITIALIZE,
  NODE,
  postRpc,
  startEverythingHttp,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import type { TestIdp } from '../support/idp.ts'

const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname
const VERSIONS = ['2025-03-26', '2025-06-18', '2025-11-25'] as const

/** The MCP SDK v2 client offering one protocol version; `seen` collects the version header of each request. */
async function connectV2(
  resource: string,
  token: string,
  version: string,
  seen: (string | null)[] = [],
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client(
    { name: 'gatehouse-test-v2', version: '2.0.0' },
    { supportedProtocolVersions: [version] },
  )
  const transport = new StreamableHTTPClientTransport(new URL(resource), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: (input, init) => {
      seen.push(new Headers(init?.headers).get('mcp-protocol-version'))
      return fetch(input, init)
    },
  })
  await client.connect(transport)
  return { client, transport }
}

describe('gateway: the MCP SDK v2 client over HTTP and stdio, protocol versions 2025-03-26 to 2025-11-25', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startEverythingHttp>>
  const gateways: Record<'stdio' | 'http', Gateway> = {} as Record<'stdio' | 'http', Gateway>
  let token: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startEverythingHttp()])
    ;[gateways.stdio, gateways.http] = await Promise.all([
      startTestGateway(idp, { command: [NODE, EVERYTHING_BIN] }),
      startTestGateway(idp, { upstream: upstream.url }),
    ])
    token = await idp.issueToken({ scope: 'mcp' })
  })

  after(async () => {
    await Promise.all([gateways.stdio?.close(), gateways.http?.close()])
    await upstream?.close()
    await idp?.close()
  })

  for (const kind of ['stdio', 'http'] as const) {
    for (const version of VERSIONS) {
      it(`${kind}, ${version}: initialize, tools, progress of a long tool, DELETE`, async () => {
        const gateway = gateways[kind]
        const seen: (string | null)[] = []
        const { client, transport } = await connectV2(gateway.resource, token, version, seen)
        assert.equal(client.getNegotiatedProtocolVersion(), version)
        assert.equal(client.getServerVersion()?.name, 'mcp-servers/everything')
        assert.ok((await client.listTools()).tools.some((t) => t.name === 'echo'))
        const echo = await client.callTool({ name: 'echo', arguments: { message: `v2 ${version}` } })
        assert.deepEqual(echo.content, [{ type: 'text', text: `Echo: v2 ${version}` }])
        const progress: number[] = []
        await client.callTool(
          { name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
          { onprogress: (p) => progress.push(p.progress) },
        )
        assert.deepEqual(progress, [1, 2, 3])
        // Every request after initialize carried the negotiated version through the gateway.
        assert.equal(seen[0], null)
        assert.ok(seen.slice(1).every((header) => header === version))

        const sessionId = transport.sessionId as string
        await transport.terminateSession()
        const reused = await postRpc(
          gateway.resource,
          { jsonrpc: '2.0', id: 7, method: 'tools/list' },
          { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': version },
        )
        assert.equal(reused.status, 404)
        await client.close()
      })
    }
  }
})

describe('gateway: TLS termination', () => {
  let idp: TestIdp
  let gateway: Gateway

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-tls-'))
    const cert = join(dir, 'cert.pem')
    const key = join(dir, 'key.pem')
    // biome-ignore format: one openssl option per line is easier to read
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    ], { stdio: 'ignore' })
    // This file runs in its own process: trusting the test certificate there affects no other test.
    setDefaultCACertificates([...getCACertificates('default'), await readFile(cert, 'utf8')])
    idp = await startIdp()
    gateway = await startTestGateway(idp, { command: [NODE, FRAGILE_CHILD] }, { tls: { cert, key } })
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  it('serves the protected flow over https: 401, metadata, token, tools', async () => {
    assert.match(gateway.resource, /^https:\/\/127\.0\.0\.1:\d+\/mcp$/)
    const unauthenticated = await postRpc(gateway.resource, INITIALIZE)
    assert.equal(unauthenticated.status, 401)
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(
      unauthenticated.headers.get('www-authenticate') ?? '',
    )
    assert.equal(
      metadataUrl?.[1],
      `${new URL(gateway.resource).origin}/.well-known/oauth-protected-resource/mcp`,
    )
    const metadata = (await (await fetch(metadataUrl?.[1] as string)).json()) as Record<string, unknown>
    assert.equal(metadata.resource, gateway.resource)
    assert.deepEqual(metadata.authorization_servers, [idp.issuer])

    const { client } = await connectV2(gateway.resource, await idp.issueToken({ scope: 'mcp' }), '2025-06-18')
    assert.deepEqual((await client.callTool({ name: 'garbage', arguments: {} })).content, [
      { type: 'text', text: 'called garbage' },
    ])
    await client.close()
  })
})

describe('gateway: tools/list filtering follows scope implications', () => {
  let idp: TestIdp
  let gateway: Gateway

  before(async () => {
    idp = await startIdp()
    gateway = await startTestGateway(
      idp,
      { command: [NODE, FRAGILE_CHILD] },
      {
        transport: {
          type: 'streamable_http',
          port: 0,
          auth: { servers: [idp.issuer], audiences: [AUDIENCE], scope_implications: { admin: ['tools'] } },
        },
        tools: { garbage: { scopes: ['tools'] } },
      },
    )
  })

  after(async () => {
    await gateway?.close()
    await idp?.close()
  })

  const cases = [
    { scope: 'admin', visible: true },
    { scope: 'tools', visible: true },
    { scope: 'mcp', visible: false },
  ]
  for (const { scope, visible } of cases) {
    it(`a token with ${scope} ${visible ? 'sees and calls' : 'neither sees nor calls'} a tool needing tools`, async () => {
      const token = await tokenFor(idp, `user-${scope}`, scope)
      const { client, transport } = await connectV2(gateway.resource, token, '2025-06-18')
      const names = (await client.listTools()).tools.map((t) => t.name)
      assert.deepEqual(names, visible ? ['crash', 'hang', 'garbage'] : ['crash', 'hang'])
      const call = await postRpc(
        gateway.resource,
        { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'garbage', arguments: {} } },
        {
          authorization: `Bearer ${token}`,
          'mcp-session-id': transport.sessionId as string,
          'mcp-protocol-version': '2025-06-18',
          accept: 'application/json',
        },
      )
      assert.equal(call.status, visible ? 200 : 403)
      if (visible) {
        assert.deepEqual(((await call.json()) as { result: unknown }).result, {
          content: [{ type: 'text', text: 'called garbage' }],
        })
      } else {
        assert.match(
          call.headers.get('www-authenticate') ?? '',
          /^Bearer error="insufficient_scope".* scope="tools"/,
        )
      }
      await client.close()
    })
  }
})
