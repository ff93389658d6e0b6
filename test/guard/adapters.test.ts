import assert from 'node:assert/strict'
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from '@modelcontextprotocol/client'
import * as v1Errors from '@modelcontextprotocol/sdk/server/auth/errors.js'
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js'
import type { AuthInfo as V1AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import {
  bearerAuthChallengeResponse,
  createMcpHandler,
  McpServer as McpServerV2,
  OAuthError,
  type AuthInfo as V2AuthInfo,
  verifyBearerToken,
} from '@modelcontextprotocol/server'
import express from 'express'
import { Hono } from 'hono'
import { guardMiddleware, protectedResourceMetadata } from '../../src/guard/adapters/express.ts'
import { guardHono, withGuard } from '../../src/guard/adapters/fetch.ts'
import { guardMcpFetch, guardTokenVerifier, toAuthInfo } from '../../src/guard/adapters/mcp-sdk.ts'
import { guardNodeHandler } from '../../src/guard/adapters/node.ts'
import { createGuard, GUARD_ERRORS, type Guard, type VerifiedToken } from '../../src/guard/index.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

// Not where the test servers listen: the adapters must take the origin from the guard, not from Host.
const RESOURCE = 'https://mcp.example.com/mcp'
const METADATA_URL = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp'
const SCOPE = 'mcp:tools'
const CHALLENGE = `Bearer scope="${SCOPE}", resource_metadata="${METADATA_URL}"`
const silent = { warn() {}, info() {} }

/** What each adapter's handler saw: the identity, in the adapter's own shape, and the body it read itself. */
interface Seen {
  subject: string | undefined
  clientId: string | undefined
  scopes: string[]
  resource?: string
  body: string
}

interface Mounted {
  fetch(path: string, init?: RequestInit): Promise<Response>
  calls: () => number
  close(): Promise<void>
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

async function mountOverHttp(server: Server, calls: () => number): Promise<Mounted> {
  const origin = await listen(server)
  return {
    fetch: (path, init) => fetch(`${origin}${path}`, init),
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

function mountFetch(
  handler: (request: Request) => Response | Promise<Response>,
  calls: () => number,
): Mounted {
  return {
    fetch: async (path, init) => handler(new Request(`https://mcp.example.com${path}`, init)),
    calls,
    close: async () => {},
  }
}

const fromAuthInfo = (auth: V1AuthInfo, body: string): Seen => ({
  subject: auth.extra?.subject as string | undefined,
  clientId: auth.clientId,
  scopes: auth.scopes,
  resource: auth.resource instanceof URL ? auth.resource.href : 'not a URL',
  body,
})

const fromToken = (token: VerifiedToken, body: string): Seen => ({
  subject: token.subject,
  clientId: token.clientId,
  scopes: token.scopes,
  body,
})

const adapters: { name: string; mount: (guard: Guard) => Promise<Mounted> }[] = [
  {
    name: 'node:http guardNodeHandler',
    mount: (guard) => {
      let calls = 0
      const server = createServer(
        guardNodeHandler(guard, async (req, res) => {
          calls++
          res.end(JSON.stringify(fromAuthInfo(req.auth, await readBody(req))))
        }),
      )
      return mountOverHttp(server, () => calls)
    },
  },
  {
    name: 'Express guardMiddleware, mounted on /mcp',
    mount: (guard) => {
      let calls = 0
      const app = express()
      app.use(protectedResourceMetadata(guard))
      app.use('/mcp', guardMiddleware(guard))
      app.post('/mcp', async (req, res) => {
        calls++
        res.json(fromAuthInfo(req.auth as V1AuthInfo, await readBody(req)))
      })
      return mountOverHttp(createServer(app), () => calls)
    },
  },
  {
    name: 'fetch withGuard',
    mount: async (guard) => {
      let calls = 0
      const handler = withGuard(guard, async (request, token) => {
        calls++
        return Response.json(fromToken(token, await request.text()))
      })
      return mountFetch(handler, () => calls)
    },
  },
  {
    name: 'Hono guardHono',
    mount: async (guard) => {
      let calls = 0
      const app = new Hono<{ Variables: { auth: VerifiedToken } }>()
      app.use('*', guardHono(guard))
      app.post('/mcp', async (c) => {
        calls++
        return c.json(fromToken(c.get('auth'), await c.req.text()))
      })
      return mountFetch(
        (request) => app.fetch(request),
        () => calls,
      )
    },
  },
]

describe('guard adapters', () => {
  let idp: TestIdp
  let guard: Guard

  before(async () => {
    idp = await startTestIdp({ resources: { [RESOURCE]: `${SCOPE} mcp:admin` } })
    guard = await createGuard({
      resource: RESOURCE,
      authorizationServers: [{ issuer: idp.issuer }],
      scopes: [SCOPE],
      logger: silent,
    })
  })
  after(() => idp?.close())

  const post = (token: string | undefined, body = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}') => ({
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body,
  })

  const expiredToken = () => {
    const now = Math.floor(Date.now() / 1000)
    return idp.sign({
      iss: idp.issuer,
      sub: 'someone',
      aud: RESOURCE,
      scope: SCOPE,
      iat: now - 600,
      exp: now - 300,
    })
  }

  for (const { name, mount } of adapters) {
    describe(name, () => {
      let mounted: Mounted
      before(async () => {
        mounted = await mount(guard)
      })
      after(() => mounted?.close())

      test('serves the Protected Resource Metadata', async () => {
        const response = await mounted.fetch('/.well-known/oauth-protected-resource/mcp')
        assert.equal(response.status, 200)
        const metadata = (await response.json()) as Record<string, unknown>
        assert.equal(metadata.resource, RESOURCE)
        assert.deepEqual(metadata.authorization_servers, [idp.issuer])
      })

      test('answers a request without a token with the challenge, without calling the handler', async () => {
        const response = await mounted.fetch('/mcp', post(undefined))
        assert.equal(response.status, 401)
        assert.equal(response.headers.get('www-authenticate'), CHALLENGE)
        assert.equal(mounted.calls(), 0)
      })

      test('refuses an expired token with its description, without calling the handler', async () => {
        const response = await mounted.fetch('/mcp', post(await expiredToken()))
        assert.equal(response.status, 401)
        assert.deepEqual(await response.json(), {
          error: 'invalid_token',
          error_description: GUARD_ERRORS.token_expired.description,
        })
        assert.equal(mounted.calls(), 0)
      })

      test('refuses a token without the required scope with 403, without calling the handler', async () => {
        const response = await mounted.fetch('/mcp', post(await idp.issueToken({ scope: 'mcp:admin' })))
        assert.equal(response.status, 403)
        assert.equal(
          response.headers.get('www-authenticate'),
          `Bearer error="insufficient_scope", error_description="${GUARD_ERRORS.insufficient_scope.description}", ` +
            `scope="${SCOPE}", resource_metadata="${METADATA_URL}"`,
        )
        assert.equal(mounted.calls(), 0)
      })

      test('passes the verified identity to the handler, with the body stream still unread', async () => {
        const body = JSON.stringify({
          jsonrpc: '2.0',
          id: 7,
          method: 'tools/call',
          params: { name: 'whoami' },
        })
        const response = await mounted.fetch('/mcp', post(await idp.issueToken({ scope: SCOPE }), body))
        assert.equal(response.status, 200)
        const seen = (await response.json()) as Seen
        assert.equal(seen.body, body)
        assert.equal(seen.clientId, 'test-client')
        assert.equal(seen.subject, 'test-client')
        assert.deepEqual(seen.scopes, [SCOPE])
        if ('resource' in seen) assert.equal(seen.resource, RESOURCE)
        assert.equal(mounted.calls(), 1)
      })
    })
  }

  test('node:http takes the URL from the resource, not from Host or an authority-looking target', async () => {
    const server = createServer(guardNodeHandler(guard, (_req, res) => res.end()))
    const origin = new URL(await listen(server))
    try {
      const get = (path: string) =>
        new Promise<{ status: number | undefined; challenge: string | undefined }>((resolve, reject) => {
          httpRequest({ host: origin.hostname, port: origin.port, path, headers: { host: 'evil.example' } })
            .on('response', (res) => {
              res.resume()
              resolve({ status: res.statusCode, challenge: res.headers['www-authenticate'] })
            })
            .on('error', reject)
            .end()
        })
      // Resolved against a base, "//evil.example/..." would become that host's metadata path.
      assert.deepEqual(await get('//evil.example/.well-known/oauth-protected-resource/mcp'), {
        status: 401,
        challenge: CHALLENGE,
      })
      assert.equal((await get('http://evil.example/.well-known/oauth-protected-resource/mcp')).status, 200)
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })

  test('toAuthInfo gives the shape of both SDKs’ AuthInfo', async () => {
    const token = await guard.verifyToken(await idp.issueToken({ scope: SCOPE }))
    const v1: V1AuthInfo = toAuthInfo(token, RESOURCE)
    const v2: V2AuthInfo = toAuthInfo(token, new URL(RESOURCE))
    assert.deepEqual(v1, v2)
    assert.deepEqual(v1, {
      token: token.token,
      clientId: 'test-client',
      scopes: [SCOPE],
      expiresAt: token.expiresAt,
      resource: new URL(RESOURCE),
      extra: { subject: token.subject, issuer: idp.issuer, claims: token.claims },
    })
  })

  describe("guardTokenVerifier in the SDKs' own bearer middleware", () => {
    const bound = () => {
      const now = Math.floor(Date.now() / 1000)
      return idp.sign({
        iss: idp.issuer,
        sub: 'someone',
        aud: RESOURCE,
        scope: SCOPE,
        iat: now,
        exp: now + 60,
        cnf: { jkt: 'x'.repeat(43) },
      })
    }
    const cases: { name: string; token: () => Promise<string>; status: number; description?: string }[] = [
      { name: 'a valid token', token: () => idp.issueToken({ scope: SCOPE }), status: 200 },
      {
        name: 'an expired token',
        token: expiredToken,
        status: 401,
        description: GUARD_ERRORS.token_expired.description,
      },
      {
        name: 'a DPoP-bound token, whose proof a bearer middleware cannot check',
        token: bound,
        status: 401,
        description: GUARD_ERRORS.dpop_binding_mismatch.description,
      },
      {
        name: "a token without the guard's scope",
        token: () => idp.issueToken({ scope: 'mcp:admin' }),
        status: 403,
        description: GUARD_ERRORS.insufficient_scope.description,
      },
    ]

    describe('v1 requireBearerAuth (Express)', () => {
      let mounted: Mounted
      before(async () => {
        let calls = 0
        const app = express()
        const verifier = guardTokenVerifier(guard, v1Errors)
        app.use(requireBearerAuth({ verifier, resourceMetadataUrl: METADATA_URL }))
        app.post('/mcp', (req, res) => {
          calls++
          res.json({ subject: req.auth?.extra?.subject, resource: req.auth?.resource?.href })
        })
        mounted = await mountOverHttp(createServer(app), () => calls)
      })
      after(() => mounted?.close())

      for (const { name, token, status, description } of cases) {
        test(`${name}: ${status}`, async () => {
          const before = mounted.calls()
          const response = await mounted.fetch('/mcp', post(await token()))
          assert.equal(response.status, status)
          const body = (await response.json()) as Record<string, unknown>
          if (description === undefined) {
            assert.deepEqual(body, { subject: 'test-client', resource: RESOURCE })
            assert.equal(mounted.calls(), before + 1)
          } else {
            assert.equal(body.error_description, description)
            assert.equal(mounted.calls(), before)
          }
        })
      }
    })

    describe('v2 verifyBearerToken and bearerAuthChallengeResponse', () => {
      for (const { name, token, status, description } of cases) {
        test(`${name}: ${status}`, async () => {
          const options = {
            verifier: guardTokenVerifier(guard, { OAuthError }),
            resourceMetadataUrl: METADATA_URL,
            expectedResource: new URL(RESOURCE),
          }
          const header = `Bearer ${await token()}`
          if (description === undefined) {
            const auth = await verifyBearerToken(header, options)
            assert.equal(auth.extra?.subject, 'test-client')
            return
          }
          const error = await verifyBearerToken(header, options).then(
            () => assert.fail('accepted'),
            (e: unknown) => e,
          )
          const response = bearerAuthChallengeResponse(error, options)
          assert.equal(response.status, status)
          assert.equal(((await response.json()) as Record<string, unknown>).error_description, description)
        })
      }
    })
  })

  test('guardMcpFetch hands the identity to v2 tool handlers as ctx.http.authInfo', async () => {
    const seen: (V2AuthInfo | undefined)[] = []
    const handler = createMcpHandler(() => {
      const server = new McpServerV2({ name: 'v2', version: '1.0.0' })
      server.registerTool('whoami', { description: 'caller' }, async (ctx) => {
        seen.push(ctx.http?.authInfo)
        return { content: [{ type: 'text', text: String(ctx.http?.authInfo?.extra?.subject) }] }
      })
      return server
    })
    const guarded = guardMcpFetch(guard, (request, options) => handler.fetch(request, options))
    const token = await idp.issueToken({ scope: SCOPE })
    const client = new ClientV2({ name: 'v2-client', version: '1.0.0' })
    await client.connect(
      new TransportV2(new URL(RESOURCE), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
        fetch: async (url, init) => guarded(new Request(url, init)),
      }),
    )
    try {
      const result = await client.callTool({ name: 'whoami', arguments: {} })
      assert.deepEqual(result.content, [{ type: 'text', text: 'test-client' }])
      assert.equal(seen.length, 1)
      assert.equal(seen[0]?.token, token)
      assert.equal(seen[0]?.resource?.href, RESOURCE)
    } finally {
      await client.close()
      await handler.close()
    }
  })
})
