/**
 * Seeded fuzzing of everything a stranger can reach: hostile JSON-RPC bodies, headers and framing at the MCP
 * endpoint of an in-process gateway in front of a stdio child and of an HTTP upstream, and at a spawned
 * `gatehouse serve --dev` (its MCP endpoint, server-everything over stdio, and the embedded authorization
 * server's endpoints). Every request whose framing is complete must get an HTTP answer; nothing may hang past
 * a timeout; after each batch the gateways answer /healthz and the spawned one has not exited. Cases are
 * raw bytes on a socket, so framing itself (chunks, wrong lengths, garbage) is part of the input.
 * FUZZ_SEED and FUZZ_RUNS change the seed and the number of cases per target.
 */
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { Gateway } from '../../src/gateway/server.ts'
import { type DevServe, startDevServe } from '../support/dev-serve.ts'
import { NODE, processAlive, startIdp, startTestGateway, tokenFor } from '../support/gateway-harness.ts'
import { startOddUpstream } from '../support/gateway-upstreams.ts'
import type { TestIdp } from '../support/idp.ts'

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_127)
const RUNS = Number(process.env.FUZZ_RUNS ?? 120)
const BATCH = 8
const ANSWER_TIMEOUT_MS = 8000
const MAX_BODY_BYTES = 32_768
const FRAGILE_CHILD = new URL('../support/gateway-stdio-child.ts', import.meta.url).pathname
const TOKEN = '<token>'

/** How the body travels: whether a complete request reaches the server decides whether an answer is due. */
type Framing = 'length' | 'chunked' | 'short' | 'long' | 'none' | 'both' | 'garbage'
const COMPLETE: ReadonlySet<Framing> = new Set(['length', 'chunked', 'short', 'none', 'both', 'garbage'])

interface Case {
  method: string
  path: string
  headers: Record<string, string>
  body: Buffer
  framing: Framing
  chunks: number
}

// --- JSON-RPC bodies -------------------------------------------------------------------------------

const TOOLS = ['echo', 'hang', 'crash', 'garbage', 'get-sum', 'delete_file', '']
const METHODS = [
  'initialize',
  'tools/list',
  'tools/call',
  'ping',
  'notifications/initialized',
  'notifications/cancelled',
  'resources/read',
  'server/discover',
  'no/such/method',
]

const message = fc.record(
  {
    jsonrpc: fc.constantFrom('2.0', '2.0', '2.0', '1.0', 2),
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null), fc.double()),
    method: fc.constantFrom(...METHODS),
    params: fc.oneof(
      fc.record({
        name: fc.constantFrom(...TOOLS),
        arguments: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
        _meta: fc.record({
          progressToken: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })),
          'io.modelcontextprotocol/protocolVersion': fc.constantFrom('2026-07-28', 'x'),
        }),
        requestId: fc.integer({ min: 0, max: 5 }),
        protocolVersion: fc.constantFrom('2025-06-18', '2026-07-28', 'x'),
      }),
      fc.jsonValue({ maxDepth: 3 }),
    ),
    result: fc.jsonValue({ maxDepth: 2 }),
  },
  { requiredKeys: ['jsonrpc'] },
)

/** Edits that make a valid message hostile: the attacks the strict parser exists for, and more. */
const hostileEdit = fc.oneof(
  fc.constant((t: string) => t),
  fc.constant((t: string) => t.replace('{', '{"method":"tools/call",')),
  fc
    .constantFrom('Name', 'NAME', 'naMe', 'Method', 'paramſ', 'ıd', 'İD', 'ID')
    .map((key) => (t: string) => t.replace('{', `{"${key}":"delete_file",`)),
  fc
    .constantFrom('1e999999', '123456789012345678901234567890', '-0', '1e-400', '0.1e1', '-')
    .map((n) => (t: string) => t.replace('{', `{"id":${n},`)),
  fc
    .constantFrom(63, 65, 300, 20_000)
    .map((depth) => (t: string) => t.replace('{', `{"deep":${'['.repeat(depth)}${']'.repeat(depth)},`)),
  fc
    .constantFrom('\\ud800', '\\u0000', '\u0000', '\\x', '\t')
    .map((text) => (t: string) => t.replace('{', `{"s":"${text}",`)),
)

const jsonRpcText = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(message, hostileEdit).map(([m, edit]) => edit(JSON.stringify(m))) },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.tuple(message, hostileEdit), { maxLength: 4 })
      .map((ms) => `[${ms.map(([m, edit]) => edit(JSON.stringify(m))).join(',')}]`),
  },
  { weight: 1, arbitrary: fc.json() },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
)

const body = fc.oneof(
  { weight: 10, arbitrary: jsonRpcText.map((t) => Buffer.from(t)) },
  // Bytes that are not UTF-8, inside a string and anywhere.
  {
    weight: 1,
    arbitrary: fc
      .constantFrom([0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82])
      .map((bad) =>
        Buffer.concat([
          Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"s":"'),
          Buffer.from(bad),
          Buffer.from('"}}'),
        ]),
      ),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)) },
  // Around the body limit.
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(MAX_BODY_BYTES - 80, MAX_BODY_BYTES + 1, MAX_BODY_BYTES * 3)
      .map((size) =>
        Buffer.from(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"${'x'.repeat(size)}"}}`),
      ),
  },
)

const option = <T>(values: readonly T[]) => fc.option(fc.constantFrom(...values), { nil: undefined })

const mcpHeaders = fc.record({
  'content-type': option([
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    'application/jsonx',
  ]),
  accept: option(['application/json, text/event-stream', 'application/json', 'text/event-stream', '*/*']),
  'mcp-protocol-version': option(['2025-06-18', '2026-07-28', '2099-01-01', 'garbage']),
  'mcp-session-id': option(['x', '00000000-0000-4000-8000-000000000000', '../../etc/passwd']),
  'mcp-method': option(['tools/call', 'tools/list', 'ping']),
  'mcp-name': option(['echo', 'delete_file']),
  'last-event-id': option(['x', '00000000-0000-4000-8000-000000000000/1']),
  authorization: option([
    TOKEN,
    TOKEN,
    'Bearer garbage',
    'Basic Zm9vOmJhcg==',
    'Bearer',
    `Bearer ${'a'.repeat(9000)}`,
  ]),
  origin: option(['http://evil.example', 'null']),
})

const framing = fc.constantFrom<Framing>(
  'length',
  'length',
  'length',
  'chunked',
  'short',
  'long',
  'none',
  'both',
  'garbage',
)

const mcpCase: fc.Arbitrary<Case> = fc.record({
  method: fc.constantFrom('POST', 'POST', 'POST', 'POST', 'GET', 'DELETE', 'PUT', 'OPTIONS'),
  path: fc.constantFrom(
    '/mcp',
    '/mcp',
    '/mcp',
    '/mcp?x=1',
    '/mcp/',
    '/healthz',
    '/.well-known/oauth-protected-resource/mcp',
  ),
  headers: mcpHeaders.map(defined),
  body,
  framing,
  chunks: fc.integer({ min: 1, max: 5 }),
})

// --- authorization server requests ----------------------------------------------------------------

const FORM_KEYS = [
  'grant_type',
  'client_id',
  'client_secret',
  'code',
  'code_verifier',
  'redirect_uri',
  'refresh_token',
  'token',
  'token_type_hint',
  'resource',
  'scope',
  'response_type',
  'code_challenge',
  'code_challenge_method',
  'state',
]
const formValue = fc.oneof(
  fc.constantFrom(
    'authorization_code',
    'client_credentials',
    'refresh_token',
    'code',
    'S256',
    'http://127.0.0.1/cb',
  ),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
)
const form = fc
  .array(fc.tuple(fc.constantFrom(...FORM_KEYS), formValue), { maxLength: 8 })
  .map((pairs) => new URLSearchParams(pairs).toString())
const registration = fc
  .record(
    {
      redirect_uris: fc.oneof(fc.array(fc.webUrl(), { maxLength: 2 }), fc.jsonValue({ maxDepth: 2 })),
      grant_types: fc.array(
        fc.constantFrom('authorization_code', 'client_credentials', 'refresh_token', 'x'),
      ),
      response_types: fc.array(fc.constantFrom('code', 'token', 'x')),
      token_endpoint_auth_method: fc.constantFrom('none', 'client_secret_basic', 'private_key_jwt', 'x'),
      client_name: fc.string({ unit: 'binary', maxLength: 30 }),
      jwks: fc.jsonValue({ maxDepth: 3 }),
    },
    { requiredKeys: [] },
  )
  .map((metadata) => JSON.stringify(metadata))

const AS_PATHS = [
  '/token',
  '/token/',
  '/register',
  '/register/x',
  '/revoke',
  '/introspect',
  '/par',
  '/jwks',
  '/userinfo',
  '/logout',
  '/.well-known/oauth-authorization-server',
  '/.well-known/openid-configuration',
]

const asCase: fc.Arbitrary<Case> = fc.record({
  method: fc.constantFrom('POST', 'POST', 'GET', 'PUT', 'OPTIONS'),
  path: fc.oneof(
    fc.constantFrom(...AS_PATHS),
    form.map((query) => `/authorize?${query}`),
    fc
      .tuple(fc.string({ maxLength: 24 }), fc.constantFrom('', '/login', '/consent', '/abort', '/x'))
      .map(([uid, tail]) => `/interaction/${encodeURIComponent(uid)}${tail}`),
  ),
  headers: fc
    .record({
      'content-type': option([
        'application/x-www-form-urlencoded',
        'application/json',
        'text/plain',
        'multipart/form-data',
      ]),
      authorization: option(['Basic Zm9vOmJhcg==', 'Basic !!!', 'Bearer garbage', 'DPoP x']),
      dpop: option(['x', 'a.b.c']),
      cookie: option(['_interaction=x', `_session=${'a'.repeat(4000)}`]),
      origin: option(['http://evil.example']),
    })
    .map(defined),
  body: fc
    .oneof(form, registration, jsonRpcText, fc.string({ unit: 'binary', maxLength: 100 }))
    .map((t) => Buffer.from(t)),
  framing,
  chunks: fc.integer({ min: 1, max: 4 }),
})

function defined(headers: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter((e): e is [string, string] => e[1] !== undefined))
}

// --- the wire -------------------------------------------------------------------------------------

/** The case as bytes on the wire, in the pieces it is written in. */
function wire(c: Case, host: string, token: string): Buffer[] {
  if (c.framing === 'garbage')
    return [Buffer.concat([Buffer.from(`${c.method} /\x00 HTTX\r\n`), c.body, Buffer.from('\r\n\r\n')])]
  const headers = Object.entries(c.headers).map(
    ([name, value]) => `${name}: ${value === TOKEN ? `Bearer ${token}` : value}\r\n`,
  )
  const length = { length: c.body.length, short: Math.floor(c.body.length / 2), long: c.body.length + 16 }
  if (c.framing === 'length' || c.framing === 'short' || c.framing === 'long' || c.framing === 'both')
    headers.push(`content-length: ${length[c.framing === 'both' ? 'length' : c.framing]}\r\n`)
  if (c.framing === 'chunked' || c.framing === 'both') headers.push('transfer-encoding: chunked\r\n')
  const head = Buffer.from(
    `${c.method} ${c.path} HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n${headers.join('')}\r\n`,
  )
  if (c.framing !== 'chunked') return [head, c.body]
  const pieces = split(c.body, c.chunks).map((piece) =>
    Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]),
  )
  return [head, ...pieces, Buffer.from('0\r\n\r\n')]
}

function split(body: Buffer, parts: number): Buffer[] {
  const size = Math.max(1, Math.ceil(body.length / parts))
  const out: Buffer[] = []
  for (let i = 0; i < body.length; i += size) out.push(body.subarray(i, i + size))
  return out
}

interface Outcome {
  /** The status of the first response, if one came. */
  status: number | undefined
  ended: 'closed' | 'reset' | 'timeout'
}

/** Writes the pieces, half-closes, and reads until the server closes (every request says `connection: close`). */
function exchange(port: number, pieces: Buffer[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let received = ''
    let ended: Outcome['ended'] = 'closed'
    const timer = setTimeout(() => {
      ended = 'timeout'
      socket.destroy()
    }, ANSWER_TIMEOUT_MS)
    socket.on('data', (chunk: Buffer) => {
      if (received.length < 64) received += chunk.toString('latin1')
    })
    socket.on('error', () => {
      if (ended === 'closed') ended = 'reset'
    })
    socket.on('close', () => {
      clearTimeout(timer)
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(received)?.[1]
      resolve({ status: status === undefined ? undefined : Number(status), ended })
    })
    socket.on('connect', async () => {
      for (const piece of pieces) {
        if (socket.destroyed) return
        socket.write(piece)
        // Pieces apart, so the server reads them as separate chunks.
        if (pieces.length > 1) await new Promise((r) => setImmediate(r))
      }
      socket.end()
    })
  })
}

function describeCase(c: Case): string {
  const body =
    c.body.length > 300
      ? `${c.body.subarray(0, 300).toString('latin1')}… (${c.body.length} B)`
      : c.body.toString('latin1')
  return `${c.method} ${c.path} [${c.framing}] ${JSON.stringify(c.headers)} ${JSON.stringify(body)}`
}

interface Target {
  name: string
  port: number
  token: string
  cases: fc.Arbitrary<Case>
  /** Throws when the target is down. */
  alive(): Promise<void>
}

async function fuzz(target: Target, seed: number): Promise<void> {
  const cases = fc.sample(target.cases, { seed, numRuns: RUNS })
  const host = `127.0.0.1:${target.port}`
  const statuses = new Map<number | string, number>()
  for (let i = 0; i < cases.length; i += BATCH) {
    const batch = cases.slice(i, i + BATCH)
    const outcomes = await Promise.all(batch.map((c) => exchange(target.port, wire(c, host, target.token))))
    for (const [j, outcome] of outcomes.entries()) {
      const c = batch[j] as Case
      const key = outcome.status ?? outcome.ended
      statuses.set(key, (statuses.get(key) ?? 0) + 1)
      assert.notEqual(
        outcome.ended,
        'timeout',
        `no answer within ${ANSWER_TIMEOUT_MS} ms: ${describeCase(c)}`,
      )
      if (COMPLETE.has(c.framing))
        assert.ok(outcome.status !== undefined, `no HTTP answer (${outcome.ended}): ${describeCase(c)}`)
      assert.ok(
        (outcome.status ?? 0) < 500 ||
          outcome.status === 502 ||
          outcome.status === 503 ||
          outcome.status === 504,
        `${outcome.status}: ${describeCase(c)}`,
      )
    }
    await target.alive()
  }
  // Which answers came, for whoever reads the test output.
  process.stderr.write(`${target.name}: ${JSON.stringify(Object.fromEntries(statuses))}\n`)
}

async function healthy(resource: string): Promise<void> {
  const response = await fetch(new URL('/healthz', resource))
  assert.equal(response.status, 200, 'the gateway does not answer /healthz')
}

describe('gateway: seeded fuzzing of the public endpoints', () => {
  let idp: TestIdp
  let upstream: Awaited<ReturnType<typeof startOddUpstream>>
  let gateways: Record<'stdio' | 'http', Gateway>
  let dev: DevServe
  let token: string

  before(async () => {
    ;[idp, upstream, dev] = await Promise.all([startIdp(), startOddUpstream(), startDevServe()])
    const file = {
      allow_anonymous_mcp_discovery: true,
      limits: { upstream_timeout_ms: 300, max_body_bytes: MAX_BODY_BYTES },
      sessions: { max_sessions: 4 },
      tools: { delete_file: { scopes: ['admin'] } },
    }
    const [stdio, http] = await Promise.all([
      startTestGateway(idp, { command: [NODE, FRAGILE_CHILD] }, file),
      startTestGateway(idp, { upstream: upstream.url('record') }, file),
    ])
    gateways = { stdio, http }
    token = await tokenFor(idp, 'alice', 'mcp')
  })

  after(async () => {
    await Promise.all(Object.values(gateways ?? {}).map((g) => g.close()))
    await Promise.all([upstream?.close(), idp?.close(), dev?.stop()])
  })

  for (const kind of ['stdio', 'http'] as const) {
    it(`MCP endpoint, ${kind} upstream, in process: every request answered, the gateway stays up`, async () => {
      const gateway = gateways[kind]
      await fuzz(
        {
          name: kind,
          port: Number(new URL(gateway.resource).port),
          token,
          cases: mcpCase,
          alive: () => healthy(gateway.resource),
        },
        SEED,
      )
    })
  }

  const devAlive = async () => {
    assert.equal(dev.child.exitCode, null, 'gatehouse serve --dev exited')
    assert.ok(processAlive(dev.child.pid as number))
    await healthy(dev.resource)
  }

  it('gatehouse serve --dev, MCP endpoint (stdio server-everything): answered, the process stays up', async () => {
    await fuzz(
      {
        name: 'serve --dev /mcp',
        port: Number(new URL(dev.resource).port),
        token: 'none',
        cases: mcpCase,
        alive: devAlive,
      },
      SEED + 1,
    )
  })

  it('gatehouse serve --dev, authorization server endpoints: answered, the process stays up', async () => {
    await fuzz(
      {
        name: 'serve --dev AS',
        port: Number(new URL(dev.resource).port),
        token: 'none',
        cases: asCase,
        alive: devAlive,
      },
      SEED + 2,
    )
  })
})
