import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { authorizeUrl, browse, CookieJar, type Harness, type Pkce, pkce } from '../auth-server/harness.ts'

/** An MCP client's loopback redirect target: records each arrival and answers a small page. */
export async function startClientCallback() {
  const arrivals: URL[] = []
  const waiting: ((url: URL) => void)[] = []
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', redirectUri)
    const waiter = waiting.shift()
    if (waiter) waiter(url)
    else arrivals.push(url)
    res.writeHead(200, { 'content-type': 'text/html' }).end('<h1 id="done">You can close this window</h1>')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`
  return {
    redirectUri,
    /** The next request the client receives. */
    next: (): Promise<URL> => {
      const arrived = arrivals.shift()
      return arrived ? Promise.resolve(arrived) : new Promise((resolve) => waiting.push(resolve))
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export interface AuthorizationRequest {
  url: string
  state: string
  pkce: Pkce
  redirectUri: string
  resource: string
}

export function authorizationRequest(
  h: Harness,
  clientId: string,
  redirectUri: string,
  scope = 'mcp:read',
): AuthorizationRequest {
  const challenge = pkce()
  const state = randomBytes(12).toString('base64url')
  const url = authorizeUrl(h, {
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope,
    resource: h.resource,
    state,
    code_challenge: challenge.challenge,
    code_challenge_method: 'S256',
  })
  return { url, state, pkce: challenge, redirectUri, resource: h.resource }
}

export interface InteractionPage {
  response: Response
  html: string
  /** The page's own URL (`<interaction path><uid>`). */
  url: string
  csrf: string
}

/** Reads an interaction page: its URL from the redirect that led there, and the CSRF token of its forms. */
export async function openPage(url: string, jar: CookieJar): Promise<InteractionPage> {
  const response = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } })
  jar.store(response)
  const html = await response.text()
  return { response, html, url, csrf: /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '' }
}

/** Starts an authorization in a fresh cookie jar and stops at the first interaction page. */
export async function startAuthorization(request: AuthorizationRequest, jar = new CookieJar()) {
  const first = await fetch(request.url, { redirect: 'manual', headers: { cookie: jar.header() } })
  jar.store(first)
  const location = first.headers.get('location')
  if (first.status !== 303 || !location)
    throw new Error(`authorization did not start an interaction: ${first.status}`)
  return { jar, page: await openPage(new URL(location, request.url).href, jar) }
}

export async function submit(url: string, jar: CookieJar, fields: Record<string, string>): Promise<Response> {
  const response = await fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields),
  })
  jar.store(response)
  return response
}

/** Follows a redirect like a browser (resume, next interaction) while it stays on the authorization server. */
export async function follow(response: Response, jar: CookieJar, base: string): Promise<Response> {
  const location = response.headers.get('location')
  if (!location) return response
  const next = new URL(location, base)
  if (next.origin !== new URL(base).origin) return response
  await response.arrayBuffer()
  return browse(next.href, jar)
}
