import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import * as oauth from 'oauth4webapi'
import { failWith } from './errors.ts'
import {
  type Challenge,
  describe,
  discoverAuthorizationServer,
  discoverResource,
  insecure,
  parseChallenges,
  type RegisteredClient,
  type Registration,
  type Report,
  type ResourceMetadata,
  reach,
  registerClient,
  stepFailed,
} from './probe_oauth.ts'
import { painter } from './style.ts'

const HELP = `Usage: gatehouse probe <mcp-url> [options]

Walks an MCP server's authorization as a client does and prints each step: the 401 and its challenge, the
Protected Resource Metadata, the authorization server's metadata, registration, authorization (browser and
a loopback callback), the iss and state checks, the token, an authenticated initialize and tools/list, and
step-up on a 403. A failed step says what the server did against the specification and what a client does.

Options:
  --client-id ID                  a pre-registered client (no registration)
  --client-secret S               its secret, for a confidential pre-registered client
  --client-id-metadata-url URL    use this client ID metadata document when the server supports CIMD
  --redirect-port N               the loopback callback's port (default: any free one)
  --call-tool NAME                after tools/list, call this tool with no arguments (step-up happens here)
  --no-browser                    print the authorization URL instead of opening a browser
  --non-interactive               follow the authorization redirects itself (a server that approves at once:
                                  gatehouse serve --dev, test servers); for tests and the MCP conformance suite,
                                  whose MCP_CONFORMANCE_CONTEXT client_id/client_secret it reads
  -h, --help                      this text

Exit status: 0 when the flow reaches tools/list (and the tool call), 1 when a step fails.

Examples:
  gatehouse probe https://mcp.example.com/mcp
  gatehouse probe http://127.0.0.1:8000/mcp --non-interactive --call-tool echo
  gatehouse probe https://mcp.example.com/mcp --client-id my-app --client-secret "$SECRET" --no-browser
  conformance client --suite auth --command "gatehouse probe --non-interactive --call-tool test-tool"`

/** Authorization requests in one run; beyond it a server that keeps answering 403 is given up on. */
const MAX_AUTHORIZATIONS = 3

interface ProbeOptions extends Omit<Registration, 'redirectUri'> {
  mcpUrl: URL
  redirectPort: number
  callTool: string | undefined
  browser: boolean
  interactive: boolean
}

export async function runProbe(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'client-id-metadata-url': { type: 'string' },
      'redirect-port': { type: 'string', default: '0' },
      'call-tool': { type: 'string' },
      'no-browser': { type: 'boolean', default: false },
      'non-interactive': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    console.log(HELP)
    return
  }
  const [url, ...extra] = positionals
  if (url === undefined || extra.length > 0 || !URL.canParse(url))
    failWith(
      'usage',
      `give exactly one MCP URL, e.g. gatehouse probe https://mcp.example.com/mcp (got ${JSON.stringify(positionals)})`,
    )
  const interactive = !values['non-interactive']
  const context = interactive ? {} : conformanceContext()
  await new Probe({
    mcpUrl: new URL(url as string),
    clientId: values['client-id'] ?? context.client_id,
    clientSecret: values['client-secret'] ?? context.client_secret,
    clientIdMetadataUrl: values['client-id-metadata-url'],
    redirectPort: Number(values['redirect-port']),
    callTool: values['call-tool'],
    browser: !values['no-browser'],
    interactive,
  }).run()
}

/** The pre-registered client the conformance runner hands its client scenarios, when it does. */
function conformanceContext(): { client_id?: string; client_secret?: string } {
  const raw = process.env.MCP_CONFORMANCE_CONTEXT
  if (!raw) return {}
  const context = JSON.parse(raw) as Record<string, unknown>
  const pick = (key: string) => (typeof context[key] === 'string' ? (context[key] as string) : undefined)
  return { client_id: pick('client_id'), client_secret: pick('client_secret') }
}

const MARKS = { ok: '✔', info: '·', fail: '✘' } as const
const TONES = { ok: 'pass', info: 'quiet', fail: 'fail' } as const

/** Each step as soon as it is done: a slow or stuck server shows where it is. */
const print: Report = (step, outcome, detail) => {
  const paint = painter()
  console.log(`${paint(TONES[outcome], MARKS[outcome])} ${step.padEnd(14)} ${detail}`)
}

/** One walk through the flow; the MCP SDK client does the MCP part over {@link Probe.fetch}. */
class Probe {
  readonly #options: ProbeOptions
  #token: string | undefined
  #resource: ResourceMetadata | undefined
  #as: oauth.AuthorizationServer | undefined
  #client: RegisteredClient | undefined
  #redirect: Callback | undefined
  #scopes = new Set<string>()
  #authorizations = 0

  constructor(options: ProbeOptions) {
    this.#options = options
  }

  async run(): Promise<void> {
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js')
    const { StreamableHTTPClientTransport } = await import(
      '@modelcontextprotocol/sdk/client/streamableHttp.js'
    )
    const client = new Client({ name: 'gatehouse-probe', version: '1.0.0' }, { capabilities: {} })
    const transport = new StreamableHTTPClientTransport(this.#options.mcpUrl, { fetch: this.fetch })
    try {
      await client.connect(transport)
      const server = client.getServerVersion()
      print(
        'initialize',
        'ok',
        `${server?.name ?? '?'} ${server?.version ?? ''}, protocol ${transport.protocolVersion ?? '?'}`,
      )
      const { tools } = await client.listTools()
      print('tools/list', 'ok', `${tools.length} tools: ${tools.map((t) => t.name).join(', ')}`)
      if (this.#options.callTool) {
        const result = await client.callTool({ name: this.#options.callTool, arguments: {} })
        print(
          'tools/call',
          result.isError ? 'info' : 'ok',
          `${this.#options.callTool}${result.isError ? ' answered a tool error (authorized; the arguments were empty)' : ''}`,
        )
      }
    } finally {
      this.#redirect?.close()
      await transport.close().catch(() => {})
    }
  }

  /** The transport's fetch: adds the token, authorizes on a 401, steps up on a 403 `insufficient_scope`. */
  readonly fetch = async (input: string | URL, init?: RequestInit): Promise<Response> => {
    let response = await this.#send(input, init)
    for (let attempt = 0; attempt < MAX_AUTHORIZATIONS; attempt++) {
      const challenge = this.#challengeOf(response)
      if (!challenge) return response
      await response.body?.cancel()
      await this.#authorize(challenge, response.status)
      response = await this.#send(input, init)
    }
    if (this.#challengeOf(response)) {
      throw stepFailed(
        'step-up',
        `the server still answers ${response.status} after ${MAX_AUTHORIZATIONS} authorizations with the scopes it asked for`,
        'stops retrying here rather than loop (MCP: clients SHOULD limit retries)',
      )
    }
    return response
  }

  #send(input: string | URL, init?: RequestInit): Promise<Response> {
    const headers = new Headers(init?.headers)
    if (this.#token) headers.set('authorization', `Bearer ${this.#token}`)
    return reach('MCP request', input, { ...init, headers })
  }

  /** A 401, or a 403 whose challenge says `insufficient_scope`: the two answers that call for authorization. */
  #challengeOf(response: Response): Challenge | undefined {
    if (response.status !== 401 && response.status !== 403) return undefined
    const challenges = parseChallenges(response.headers.get('www-authenticate'))
    const bearer = challenges.find((c) => c.scheme.toLowerCase() === 'bearer') ?? challenges[0]
    if (response.status === 403 && bearer?.params.error !== 'insufficient_scope') return undefined
    if (response.status === 401 && !bearer) {
      print(
        '401',
        'info',
        'no WWW-Authenticate challenge (RFC 6750 §3, MCP: servers MUST send one); trying the well-known locations',
      )
      return { scheme: 'Bearer', params: {} }
    }
    return bearer
  }

  async #authorize(challenge: Challenge, status: number): Promise<void> {
    const { params } = challenge
    print(
      String(status),
      'ok',
      `challenge ${challenge.scheme} ${Object.entries(params)
        .map(([k, v]) => `${k}="${v}"`)
        .join(', ')}`,
    )
    if (++this.#authorizations > MAX_AUTHORIZATIONS) {
      throw stepFailed(
        'step-up',
        `${MAX_AUTHORIZATIONS} authorizations did not satisfy the server`,
        'stops retrying (MCP: clients SHOULD limit retries)',
      )
    }
    const { mcpUrl } = this.#options
    this.#resource ??= await discoverResource(mcpUrl, params.resource_metadata, print)
    const issuer = this.#resource?.authorizationServers[0] ?? mcpUrl.origin
    this.#as ??= await discoverAuthorizationServer(issuer, this.#resource === undefined, print)
    const as = this.#as
    this.#redirect ??= await listenForCallback(this.#options.redirectPort, this.#options.interactive)
    this.#client ??= await registerClient(as, { ...this.#options, redirectUri: this.#redirect.uri }, print)
    // The challenge's scope, else the PRM's scopes_supported, else none (MCP scope selection); step-up adds.
    const wanted =
      params.scope?.split(' ') ?? (this.#scopes.size ? [] : (this.#resource?.scopesSupported ?? []))
    for (const scope of wanted.filter(Boolean)) this.#scopes.add(scope)
    const callback = await this.#authorizationRedirect(as, this.#client)
    const token = await this.#exchange(as, this.#client, callback)
    this.#token = token
  }

  /** The authorization request, then the callback's `iss`, `state` and `error` checks (RFC 9207, RFC 6749 §10.12). */
  async #authorizationRedirect(as: oauth.AuthorizationServer, registered: RegisteredClient) {
    const redirectUri = (this.#redirect as Callback).uri
    const verifier = oauth.generateRandomCodeVerifier()
    const state = oauth.generateRandomState()
    if (!as.authorization_endpoint)
      throw stepFailed(
        'authorize',
        'the metadata has no authorization_endpoint (RFC 8414 §2)',
        'cannot go on',
      )
    const url = new URL(as.authorization_endpoint)
    const resource = this.#resource?.resource ?? this.#options.mcpUrl.href
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: registered.client.client_id,
      redirect_uri: redirectUri,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      resource,
      ...(this.#scopes.size ? { scope: [...this.#scopes].join(' ') } : {}),
    }).toString()
    print(
      'authorize',
      'ok',
      `${registered.how}; scope ${this.#scopes.size ? [...this.#scopes].join(' ') : '(none)'}; resource ${resource}`,
    )
    const callbackUrl = this.#options.interactive
      ? await this.#viaBrowser(url)
      : await followRedirects(url, redirectUri)
    let params: URLSearchParams
    try {
      params = oauth.validateAuthResponse(as, registered.client, callbackUrl, state)
    } catch (error) {
      throw stepFailed(
        'callback',
        `the authorization response was refused: ${describe(error)} (RFC 9207 iss, RFC 6749 §10.12 state, §4.1.2.1 error)`,
        'discards the response and does not redeem its code',
      )
    }
    print(
      'callback',
      'ok',
      `state matches${callbackUrl.searchParams.has('iss') ? ', iss matches' : as.authorization_response_iss_parameter_supported ? '' : ', no iss (not advertised)'}`,
    )
    return { params, verifier, redirectUri, resource }
  }

  async #exchange(
    as: oauth.AuthorizationServer,
    registered: RegisteredClient,
    callback: { params: URLSearchParams; verifier: string; redirectUri: string; resource: string },
  ): Promise<string> {
    const response = await oauth.authorizationCodeGrantRequest(
      as,
      registered.client,
      registered.auth,
      callback.params,
      callback.redirectUri,
      callback.verifier,
      { additionalParameters: { resource: callback.resource }, ...insecure(as.token_endpoint) },
    )
    let tokens: oauth.TokenEndpointResponse
    try {
      tokens = await oauth.processAuthorizationCodeResponse(as, registered.client, response)
    } catch (error) {
      throw stepFailed('token', `the token request failed: ${describe(error)}`, 'cannot call the server')
    }
    print(
      'token',
      'ok',
      `${tokens.token_type}, ${describeToken(tokens.access_token)}, scope ${tokens.scope ?? '(not said)'}, expires in ${tokens.expires_in ?? '?'} s${tokens.refresh_token ? ', refresh token' : ''}`,
    )
    return tokens.access_token
  }

  /** Opens the browser (or prints the URL) and waits for the loopback callback. */
  async #viaBrowser(url: URL): Promise<URL> {
    print('browser', 'info', `open ${url.href}`)
    if (this.#options.browser) openBrowser(url.href)
    return (this.#redirect as Callback).next()
  }
}

interface Callback {
  uri: string
  /** The next request to the redirect URI: one authorization response. */
  next(): Promise<URL>
  close(): void
}

/**
 * The loopback redirect URI (RFC 8252 §7.3). The non-interactive mode reads the redirect's Location instead
 * of receiving it, so it only reserves the port's number.
 */
async function listenForCallback(port: number, interactive: boolean): Promise<Callback> {
  const waiting: ((url: URL) => void)[] = []
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', uri)
    if (url.pathname !== '/callback') return void res.writeHead(404).end()
    res
      .writeHead(200, { 'content-type': 'text/plain; charset=utf-8' })
      .end('gatehouse probe: you can close this tab.')
    waiting.shift()?.(url)
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  const uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`
  if (!interactive) server.close()
  return {
    uri,
    next: () => new Promise<URL>((resolve) => waiting.push(resolve)),
    close: () => server.close(),
  }
}

/**
 * The non-interactive authorization: GET the authorization URL and follow its redirects, with cookies,
 * until one points at the redirect URI. A server that shows a page instead wants a person.
 */
async function followRedirects(start: URL, redirectUri: string): Promise<URL> {
  const cookies = new Map<string, string>()
  let url = start
  for (let hop = 0; hop < 20; hop++) {
    const response = await reach('authorize', url, {
      redirect: 'manual',
      headers: cookies.size ? { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') } : {},
    })
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const at = pair?.indexOf('=') ?? -1
      if (pair && at > 0) cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim())
    }
    await response.body?.cancel()
    const location = response.headers.get('location')
    if (response.status < 300 || response.status >= 400 || !location) {
      throw stepFailed(
        'authorize',
        `${url.href} answered ${response.status} instead of redirecting to ${redirectUri}: it wants a person (sign-in or consent)`,
        'waits for the user in a browser: run without --non-interactive',
      )
    }
    url = new URL(location, url)
    if (url.href.startsWith(`${redirectUri}?`) || url.href === redirectUri) return url
  }
  throw stepFailed('authorize', 'more than 20 redirects without reaching the redirect URI', 'gives up')
}

function describeToken(token: string): string {
  const [, payload] = token.split('.')
  if (token.split('.').length !== 3 || !payload) return 'opaque access token'
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>
    return `JWT access token, aud ${JSON.stringify(claims.aud)}`
  } catch {
    return 'access token that looks like a JWT but is not JSON'
  }
}

function openBrowser(url: string): void {
  const command =
    process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open'
  execFile(command, [url], () => {
    // No browser here (a server, a container): the URL is printed above.
  })
}
