import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { guardNodeHandler } from '../../src/guard/adapters/node.ts'
import { createGuard, type Guard, type RequestHead } from '../../src/guard/index.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

// The guard read from a request head (method, target, header values) instead of a web Request: the same
// decisions, on what Node hands over.

const RESOURCE = 'https://mcp.example.com/mcp'
const silent = { warn() {}, info() {} }

let idp: TestIdp
let guard: Guard
let token: string

before(async () => {
  idp = await startTestIdp({ resources: { [RESOURCE]: 'files:read' } })
  guard = await createGuard({
    resource: RESOURCE,
    authorizationServers: [{ issuer: idp.issuer }],
    scopes: ['files:read'],
    logger: silent,
  })
  token = await idp.issueToken({ scope: 'files:read' })
})

after(() => idp.close())

const head = (authorization: string | string[] | undefined, url = '/mcp', method = 'POST'): RequestHead => ({
  method,
  url,
  headers: { authorization },
})

async function codeOf(request: RequestHead): Promise<string> {
  const result = await guard.check(request)
  return result.ok ? 'accepted' : result.error.code
}

describe('guard.check on a request head', () => {
  it('accepts a valid token, and again from the cache', async () => {
    assert.equal(await codeOf(head(`Bearer ${token}`)), 'accepted')
    assert.equal(await codeOf(head(`Bearer ${token}`)), 'accepted')
  })

  it('refuses an Authorization field sent twice, even with the same cached token twice', async () => {
    assert.equal(await codeOf(head([`Bearer ${token}`, `Bearer ${token}`])), 'credentials_duplicated')
  })

  it('refuses the token in the query, cached or not', async () => {
    assert.equal(await codeOf(head(`Bearer ${token}`, `/mcp?access_token=${token}`)), 'token_in_query')
    assert.equal(await codeOf(head(`Bearer ${token}`, '/mcp?acc%65ss_token=x')), 'token_in_query')
  })

  it('a cache hit needs the whole token: one that shares the cache key but not the payload is verified', async () => {
    assert.equal(await codeOf(head(`Bearer ${token}`)), 'accepted')
    const [header, payload, signature] = token.split('.') as [string, string, string]
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: 'admin' })).toString('base64url')}.${signature}`
    assert.equal(forged.slice(-32), token.slice(-32))
    assert.equal(await codeOf(head(`Bearer ${forged}`)), 'signature_invalid')
    await assert.rejects(guard.verifyToken(forged), { code: 'signature_invalid' })
  })

  it('reads the metadata path on the resource origin, normalized as a URL would be', () => {
    assert.equal(
      guard.metadataResponse(head(undefined, '/.well-known/oauth-protected-resource/mcp', 'GET'))?.status,
      200,
    )
    assert.equal(
      guard.metadataResponse(head(undefined, '/x/../.well-known/oauth-protected-resource/mcp', 'GET'))
        ?.status,
      200,
    )
    assert.equal(
      guard.metadataResponse(
        head(undefined, '//evil.example/.well-known/oauth-protected-resource/mcp', 'GET'),
      ),
      undefined,
    )
    assert.equal(guard.metadataResponse(head(undefined, '/mcp')), undefined)
  })
})

describe('the node adapter keeps every Authorization field Node itself would drop', () => {
  let server: Server
  let calls = 0
  before(async () => {
    server = createServer(
      guardNodeHandler(guard, (_req, res) => {
        calls++
        res.end('ok')
      }),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  })
  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  /** A raw HTTP/1.1 request, so that a header field can be sent twice (fetch would join the values). */
  function raw(lines: string[]): Promise<string> {
    const { port } = server.address() as AddressInfo
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end(
          `POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n${lines.join('\r\n')}\r\n\r\n`,
        )
      })
      let answer = ''
      socket.on('data', (chunk) => {
        answer += chunk
      })
      socket.on('end', () => resolve(answer))
      socket.on('error', reject)
    })
  }

  it('one Authorization field: the handler runs', async () => {
    const before = calls
    assert.match(await raw([`Authorization: Bearer ${token}`]), /^HTTP\/1.1 200/)
    assert.equal(calls, before + 1)
  })

  it('two Authorization fields: 400 credentials_duplicated, the handler never runs', async () => {
    const before = calls
    const answer = await raw([`Authorization: Bearer ${token}`, `authorization: Bearer ${token}`])
    assert.match(answer, /^HTTP\/1.1 400/)
    assert.match(answer, /more than one access token/)
    assert.equal(calls, before)
  })
})
