import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import type { Gateway } from '../../src/gateway/server.ts'
import {
  EVERYTHING_BIN,
  type LogCapture,
  logCapture,
  NODE,
  postRpc,
  startIdp,
  startTestGateway,
  tokenFor,
} from '../support/gateway-harness.ts'
import { startStatelessUpstream } from '../support/gateway-stateless-upstream.ts'
import type { TestIdp } from '../support/idp.ts'

const VERSION = '2026-07-28'
/** What the bridge speaks: the stateless revision, and the 2025 ones with sessions. */
const BRIDGE_VERSIONS = ['2026-07-28', '2025-11-25', '2025-06-18', '2025-03-26']
const META = {
  'io.modelcontextprotocol/protocolVersion': VERSION,
  'io.modelcontextprotocol/clientCapabilities': {},
}

/** The MCP SDK v2 client pinned to the stateless era; `seen` collects the headers of each request. */
async function connectStateless(resource: string, token: string, seen: Headers[] = []): Promise<Client> {
  const client = new Client(
    { name: 'gatehouse-test-2026', version: '1.0.0' },
    { versionNegotiation: { mode: { pin: VERSION } } },
  )
  const transport = new StreamableHTTPClientTransport(new URL(resource), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: (input, init) => {
      seen.push(new Headers(init?.headers))
      return fetch(input, init)
    },
  })
  await client.connect(transport)
  return client
}

const started = (log: LogCapture): number =>
  log.lines.filter((line) => JSON.parse(line).msg === 'MCP server process started').length

describe('gateway: 2026-07-28 stateless requests', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startStatelessUpstream>>
  let stdio: Gateway
  let http: Gateway
  let stdioLog: LogCapture
  let token: string

  before(async () => {
    ;[idp, upstream] = await Promise.all([startIdp(), startStatelessUpstream()])
    stdioLog = logCapture()
    ;[stdio, http] = await Promise.all([
      startTestGateway(idp, { command: [NODE, EVERYTHING_BIN] }, {}, stdioLog),
      startTestGateway(idp, { upstream: upstream.url }),
    ])
    token = await tokenFor(idp, 'alice', 'mcp')
  })

  after(async () => {
    await Promise.all([stdio?.close(), http?.close()])
    await upstream?.close()
    await idp?.close()
  })

  it('stdio: the pinned client discovers, lists and calls server-everything, with progress', async () => {
    const seen: Headers[] = []
    const client = await connectStateless(stdio.resource, token, seen)
    assert.equal(client.getProtocolEra(), 'modern')
    assert.equal(client.getServerVersion()?.name, 'mcp-servers/everything')
    assert.ok((await client.listTools()).tools.some((t) => t.name === 'echo'))
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'stateless' } })
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: stateless' }])
    const progress: number[] = []
    await client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
      { onprogress: (p) => progress.push(p.progress) },
    )
    assert.deepEqual(progress, [1, 2, 3])
    assert.ok(seen.every((h) => h.get('mcp-protocol-version') === VERSION && h.get('mcp-method') !== null))
    await client.close()
  })

  it('stdio: one child per subject, never shared with another subject', async () => {
    const bob = await tokenFor(idp, 'bob', 'mcp')
    const carol = await tokenFor(idp, 'carol', 'mcp')
    const before = started(stdioLog)
    const first = await connectStateless(stdio.resource, bob)
    await first.listTools()
    const second = await connectStateless(stdio.resource, bob)
    await second.callTool({ name: 'echo', arguments: { message: 'again' } })
    assert.equal(started(stdioLog), before + 1)
    const other = await connectStateless(stdio.resource, carol)
    await other.listTools()
    assert.equal(started(stdioLog), before + 2)
    await Promise.all([first.close(), second.close(), other.close()])
  })

  it('stdio: concurrent requests with the same id from one subject each get their own answer', async () => {
    const calls = ['one', 'two', 'three'].map((message) =>
      postRpc(
        stdio.resource,
        {
          jsonrpc: '2.0',
          id: 1,
          method: 'tools/call',
          params: { name: 'echo', arguments: { message }, _meta: META },
        },
        {
          authorization: `Bearer ${token}`,
          'mcp-protocol-version': VERSION,
          'mcp-method': 'tools/call',
          'mcp-name': 'echo',
          accept: 'application/json',
        },
      ).then((r) => r.json()),
    )
    const answers = await Promise.all(calls)
    assert.deepEqual(
      answers.map((a) => a.result.content[0].text),
      ['Echo: one', 'Echo: two', 'Echo: three'],
    )
    assert.ok(answers.every((a) => a.id === 1 && a.result.resultType === 'complete'))
  })

  it('stdio: refuses what the stateless transport does not allow', async () => {
    const auth = { authorization: `Bearer ${token}` }
    const list = { jsonrpc: '2.0', id: 5, method: 'tools/list', params: { _meta: META } }
    const cases: {
      name: string
      body?: unknown
      method?: string
      headers: Record<string, string>
      status: number
      error: unknown
    }[] = [
      {
        name: 'an unsupported version',
        body: list,
        headers: { 'mcp-protocol-version': '2027-01-01', 'mcp-method': 'tools/list' },
        status: 400,
        error: {
          code: -32022,
          message: 'unsupported protocol version 2027-01-01',
          data: { supported: BRIDGE_VERSIONS, requested: '2027-01-01' },
        },
      },
      {
        name: 'a _meta version other than the header',
        body: {
          ...list,
          params: { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': '2025-11-25' } },
        },
        headers: { 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/list' },
        status: 400,
        error: { code: -32020, message: 'the MCP-Protocol-Version header does not match the request _meta' },
      },
      {
        name: 'no Mcp-Method',
        body: list,
        headers: { 'mcp-protocol-version': VERSION },
        status: 400,
        error: { code: -32020, message: 'the Mcp-Method header is required' },
      },
      {
        name: 'an Mcp-Method other than the body',
        body: list,
        headers: { 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/call' },
        status: 400,
        error: { code: -32020, message: 'the Mcp-Method header does not match the body' },
      },
      ...(
        [
          ['no _meta', {}, '_meta'],
          [
            'no version in _meta',
            { _meta: { 'io.modelcontextprotocol/clientCapabilities': {} } },
            '_meta["io.modelcontextprotocol/protocolVersion"]',
          ],
          [
            'no client capabilities in _meta',
            { _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION } },
            '_meta["io.modelcontextprotocol/clientCapabilities"]',
          ],
        ] as const
      ).map(([name, params, field]) => ({
        name,
        body: { ...list, params },
        headers: { 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/list' },
        status: 400,
        error: {
          code: -32602,
          message: `Invalid params: the request has no ${field}; 2026-07-28 requires it on every request`,
        },
      })),
      ...['GET', 'DELETE'].map((method) => ({
        name: method,
        method,
        headers: { 'mcp-protocol-version': VERSION },
        status: 405,
        error: { code: -32000, message: 'Method Not Allowed: the stateless protocol has no sessions' },
      })),
    ]
    for (const { name, body, method, headers, status, error } of cases) {
      const response =
        body === undefined
          ? await fetch(stdio.resource, {
              method,
              headers: { ...auth, ...headers, accept: 'text/event-stream' },
            })
          : await postRpc(stdio.resource, body, { ...auth, ...headers })
      assert.equal(response.status, status, name)
      const answer = await response.json()
      assert.deepEqual(answer.error, error, name)
      if (body !== undefined) assert.equal(answer.id, 5, name)
    }
  })

  it('stdio: methods the revision removed are 404 -32601 and never reach the server', async () => {
    const removed = ['initialize', 'ping', 'logging/setLevel', 'resources/subscribe', 'resources/unsubscribe']
    for (const method of removed) {
      const response = await postRpc(
        stdio.resource,
        {
          jsonrpc: '2.0',
          id: 500,
          method,
          params: { uri: 'demo://resource/static/document/1', _meta: META },
        },
        { authorization: `Bearer ${token}`, 'mcp-protocol-version': VERSION, 'mcp-method': method },
      )
      assert.equal(response.status, 404, method)
      // The bridge's own text: server-everything would have answered these (ping with {}, initialize...).
      assert.deepEqual(
        await response.json(),
        {
          jsonrpc: '2.0',
          id: 500,
          error: {
            code: -32601,
            message: `Method not found: ${method} (not available under protocol version ${VERSION})`,
          },
        },
        method,
      )
    }
  })

  it("stdio: the server's own method-not-found is HTTP 404, its id kept", async () => {
    const response = await postRpc(
      stdio.resource,
      { jsonrpc: '2.0', id: 601, method: 'unknown/method', params: { _meta: META } },
      { authorization: `Bearer ${token}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'unknown/method' },
    )
    assert.equal(response.status, 404)
    const answer = await response.json()
    assert.equal(answer.id, 601)
    assert.equal(answer.error.code, -32601)
  })

  it('stdio: a stray Mcp-Session-Id is ignored, and server/discover answers from the child', async () => {
    const response = await postRpc(
      stdio.resource,
      { jsonrpc: '2.0', id: 'd', method: 'server/discover', params: { _meta: META } },
      {
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': VERSION,
        'mcp-method': 'server/discover',
        'mcp-session-id': crypto.randomUUID(),
      },
    )
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('mcp-session-id'), null)
    const { result } = await response.json()
    assert.deepEqual(result.supportedVersions, BRIDGE_VERSIONS)
    // List changes and resource subscriptions as the child offers them: subscriptions/listen serves them
    // (test/gateway/stdio-listen.test.ts).
    for (const name of ['tools', 'prompts', 'resources']) {
      assert.equal(result.capabilities[name]?.listChanged, true, name)
    }
    assert.equal(result.capabilities.resources?.subscribe, true)
    assert.equal(result._meta['io.modelcontextprotocol/serverInfo'].name, 'mcp-servers/everything')
    assert.deepEqual([result.resultType, result.ttlMs, result.cacheScope], ['complete', 0, 'private'])
  })

  it('http: the pinned client goes through to a stateless upstream, headers intact, no session id', async () => {
    upstream.seen.length = 0
    const client = await connectStateless(http.resource, token)
    assert.equal(client.getProtocolEra(), 'modern')
    assert.deepEqual(
      (await client.listTools()).tools.map((t) => t.name),
      ['echo'],
    )
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'through' } })
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: through' }])
    await client.close()
    const stray = await postRpc(
      http.resource,
      { jsonrpc: '2.0', id: 9, method: 'tools/list', params: { _meta: META } },
      {
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': VERSION,
        'mcp-method': 'tools/list',
        'mcp-session-id': 'someone-elses-session',
      },
    )
    assert.equal(stray.status, 200)
    assert.deepEqual(
      upstream.seen.map((h) => [
        h['mcp-protocol-version'],
        h['mcp-method'],
        h['mcp-session-id'],
        h.authorization,
      ]),
      [
        [VERSION, 'server/discover', undefined, undefined],
        [VERSION, 'tools/list', undefined, undefined],
        [VERSION, 'tools/call', undefined, undefined],
        [VERSION, 'tools/list', undefined, undefined],
      ],
    )
    assert.equal(upstream.seen[2]?.['mcp-name'], 'echo')
  })
})
