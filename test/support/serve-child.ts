import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { stringify } from 'yaml'
import { createLocalUser } from '../../src/auth-server/index.ts'
import { openStore } from '../../src/storage/index.ts'
import { CookieJar, pkce } from '../auth-server/harness.ts'
import { MAIN } from './embedded-gateway.ts'
import { EVERYTHING_BIN, NODE } from './gateway-harness.ts'

export const PASSWORD = 'correct horse battery staple'
export const CLIENT_ID = 'soak-app'
/** Never contacted: the code is read from the redirect's Location. */
export const REDIRECT_URI = 'http://127.0.0.1:9/callback'
export const SECRET = 'soak-secret-soak-secret-soak-secret-0123'

export interface ServeChild {
  child: ChildProcess
  resource: string
  issuer: string
  /** The Node inspector's WebSocket URL when started with `inspect`. */
  inspector?: string
  /** The last lines it wrote to stderr. */
  stderr: string[]
  /** Its last log lines (JSON, stdout). */
  log: string[]
  /** Every entry it logged at error or fatal. */
  logErrors: string[]
  stop(signal?: NodeJS.Signals): Promise<void>
}

export interface ServeOptions {
  dataDir: string
  /** `storage.url`; SQLite in `dataDir` when undefined. */
  storageUrl?: string
  /** An HTTP upstream's URL; server-everything over stdio when undefined. */
  upstream?: string
  port?: number
  /** Runs the gateway with --expose-gc and the inspector on a loopback port (heap measurements). */
  inspect?: boolean
  /** Added to the configuration file. */
  settings?: Record<string, unknown>
}

/**
 * The gatehouse.yaml of a gateway with the embedded authorization server, one public web client and
 * session limits high enough for many reconnects from one machine. `trust_proxy` lets a load generator
 * spread its sign-ins over X-Forwarded-For addresses (the sign-in limit per address is 50 per 15 min).
 */
export async function writeServeConfig(options: ServeOptions): Promise<string> {
  const path = join(options.dataDir, 'gatehouse.yaml')
  const config = {
    trust_proxy: true,
    sessions: { new_sessions_per_user_per_minute: 6000, new_sessions_per_minute: 60_000, max_sessions: 1000 },
    authorization_server: {
      clients: [
        {
          client_id: CLIENT_ID,
          application_type: 'web',
          redirect_uris: [REDIRECT_URI],
          token_endpoint_auth_method: 'none',
        },
      ],
    },
    ...(options.storageUrl ? { storage: { url: options.storageUrl } } : {}),
    ...options.settings,
  }
  await writeFile(path, stringify(config))
  return path
}

/** Local accounts `names` with PASSWORD, in the store the gateway will open. */
export async function createUsers(options: ServeOptions, names: string[]): Promise<void> {
  const store = await openStore(options.storageUrl, { dataDir: options.dataDir })
  try {
    for (const name of names) await createLocalUser(store, name, PASSWORD)
  } finally {
    await store.close()
  }
}

/** `gatehouse serve` as a child process (the CLI as users run it), ready when it logs its MCP URL. */
export async function startServeChild(options: ServeOptions): Promise<ServeChild> {
  const config = await writeServeConfig(options)
  const upstream = options.upstream ? ['--upstream', options.upstream] : ['--', NODE, EVERYTHING_BIN]
  const node = options.inspect ? ['--expose-gc', '--inspect=127.0.0.1:0'] : []
  const child = spawn(
    NODE,
    [
      ...node,
      MAIN,
      'serve',
      '--config',
      config,
      '--data-dir',
      options.dataDir,
      '--port',
      String(options.port ?? 0),
      ...upstream,
    ],
    {
      env: { PATH: process.env.PATH, GATEHOUSE_SECRET: SECRET, GATEHOUSE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  const exited = once(child, 'exit')
  const stdout = lineReader(child, 'stdout')
  const stderr = lineReader(child, 'stderr')
  const [resource, inspector] = await Promise.all([
    stdout.first(/"resource":"([^"]+)"/),
    options.inspect ? stderr.first(/Debugger listening on (ws:\S+)/) : undefined,
  ])
  return {
    child,
    resource,
    issuer: new URL(resource).origin,
    inspector,
    stderr: stderr.lines,
    log: stdout.lines,
    logErrors: stdout.errors,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      await exited
    },
  }
}

/** Reads one of the child's streams to its end (a full pipe would block it), keeping its last lines. */
function lineReader(child: ChildProcess, stream: 'stdout' | 'stderr') {
  const lines: string[] = []
  /** Log entries at error or fatal (pino levels 50 and 60). */
  const errors: string[] = []
  const waiting: [RegExp, (found: string) => void][] = []
  const input = child[stream]
  if (!input) throw new Error(`the child has no ${stream}`)
  createInterface({ input }).on('line', (line) => {
    lines.push(line)
    if (lines.length > 200) lines.shift()
    if (/^\{"level":[56]0,/.test(line)) errors.push(line)
    for (const [pattern, resolve] of waiting) {
      const found = pattern.exec(line)?.[1]
      if (found) resolve(found)
    }
  })
  return {
    lines,
    errors,
    first: (pattern: RegExp) =>
      new Promise<string>((resolve, reject) => {
        waiting.push([pattern, resolve])
        child.once('exit', (code, signal) =>
          reject(new Error(`gatehouse serve exited with ${code ?? signal}: ${lines.join('\n')}`)),
        )
      }),
  }
}

export interface Tokens {
  access_token: string
  refresh_token: string
}

/**
 * A user's sign-in and consent as a browser does it, in a fresh cookie jar, behind a proxy that sets
 * X-Forwarded-For to `address`; then the code for tokens, with the `DPoP` proof `dpop` makes for the token
 * endpoint when given (DPoP-bound tokens).
 */
export async function signIn(
  issuer: string,
  resource: string,
  username: string,
  address: string,
  dpop?: (method: string, url: string) => Promise<string>,
) {
  const jar = new CookieJar()
  const headers = { 'x-forwarded-for': address }
  const go = async (url: string, init: RequestInit = {}) => {
    const response = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: { ...headers, ...(init.headers as Record<string, string>), cookie: jar.header() },
    })
    jar.store(response)
    return response
  }
  const post = (url: string, fields: Record<string, string>) =>
    go(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
    })
  /** Follows redirects on the authorization server; stops at the redirect to the client. */
  const settle = async (response: Response): Promise<{ response: Response; url: string }> => {
    let url = response.url
    for (let hop = 0; hop < 8; hop++) {
      const location = response.headers.get('location')
      if (!location || location.startsWith(REDIRECT_URI)) return { response, url }
      await response.arrayBuffer()
      url = new URL(location, issuer).href
      response = await go(url)
    }
    throw new Error('too many redirects during sign-in')
  }
  const csrf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? ''
  const challenge = pkce()
  const authorize = new URL(`${issuer}/authorize`)
  for (const [key, value] of Object.entries({
    client_id: CLIENT_ID,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: 'mcp',
    resource,
    state: 'soak',
    code_challenge: challenge.challenge,
    code_challenge_method: 'S256',
  }))
    authorize.searchParams.set(key, value)

  let page = await settle(await go(authorize.href))
  const login = await page.response.text()
  if (!/name="password"/.test(login)) throw new Error(`no sign-in page: ${page.response.status} ${login}`)
  page = await settle(await post(`${page.url}/login`, { csrf: csrf(login), username, password: PASSWORD }))
  if (!page.response.headers.get('location')?.startsWith(REDIRECT_URI)) {
    const consent = await page.response.text()
    page = await settle(await post(`${page.url}/consent`, { csrf: csrf(consent), decision: 'approve' }))
  }
  const location = new URL(page.response.headers.get('location') ?? 'about:blank')
  const code = location.searchParams.get('code')
  if (!code) throw new Error(`sign-in of ${username} ended without a code: ${location.href}`)
  const issued = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: dpop ? { ...headers, dpop: await dpop('POST', `${issuer}/token`) } : headers,
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: challenge.verifier,
      client_id: CLIENT_ID,
      resource,
    }),
  })
  const body = (await issued.json()) as Tokens
  if (issued.status !== 200) throw new Error(`code exchange failed: ${issued.status} ${JSON.stringify(body)}`)
  return body
}

/** A refresh: the status and the body, whatever they are. */
export async function refresh(issuer: string, refreshToken: string) {
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: CLIENT_ID,
    }),
  })
  return { status: response.status, body: (await response.json()) as Tokens & { error?: string } }
}

/** RFC 7009 revocation of a refresh token (the grant with it). */
export async function revoke(issuer: string, refreshToken: string): Promise<number> {
  const response = await fetch(`${issuer}/revoke`, {
    method: 'POST',
    body: new URLSearchParams({
      token: refreshToken,
      token_type_hint: 'refresh_token',
      client_id: CLIENT_ID,
    }),
  })
  await response.arrayBuffer()
  return response.status
}
