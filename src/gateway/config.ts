import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { guardOptionsFromAuthBlock } from '../config/apollo.ts'
import {
  type EmbeddedAuthorizationConfig,
  embeddedAuthorizationConfig,
  embeddedGuardOptions,
  isLoopback,
  usesEmbeddedAuthorizationServer,
} from '../config/embedded.ts'
import { GatewayConfigError, only } from '../config/errors.ts'
import { type GuardOptions, guardOptionsFromEnv } from '../guard/index.ts'

export type UpstreamCredentialsMode = 'none' | 'passthrough'
/** Modes the configuration reserves for token exchange and the token vault, refused until they exist. */
const PLANNED_CREDENTIAL_MODES = new Set<unknown>(['exchange', 'vault'])

export type UpstreamConfig =
  | { kind: 'http'; url: URL }
  | {
      kind: 'stdio'
      command: string
      args: string[]
      env: Record<string, string>
      cwd: string | undefined
      /** One child for every session and subject (`stdio.shared`), instead of one per session. */
      shared: boolean
    }

/** The one validated configuration of `gatehouse serve`, whatever mix of flags, environment and file it came from. */
export interface GatewayConfig {
  upstream: UpstreamConfig
  port: number
  address: string
  /** The canonical MCP URL; when unset it is derived from the address and the port the gateway listens on. */
  publicUrl: string | undefined
  /** Guard options for a canonical resource, known only once the gateway listens when `publicUrl` is unset. */
  guardOptions: (resource: string) => GuardOptions
  /** Scopes a `tools/call` needs, per tool; tools not listed need `defaultToolScopes`. */
  tools: Record<string, readonly string[]>
  defaultToolScopes: readonly string[]
  /** Tools that only a user's token may call (`tools.<name>.users_only`); hidden from machine clients. */
  usersOnlyTools: ReadonlySet<string>
  /**
   * Tokens a client got for itself (client credentials, no user) are refused at /mcp unless this is true;
   * see the guard's `VerifiedToken.actor`.
   */
  allowMachineClients: boolean
  allowAnonymousDiscovery: boolean
  upstreamCredentials: UpstreamCredentialsMode
  sessions: {
    idleTimeoutSeconds: number
    maxSessions: number
    /** Default 10 (at most `maxSessions`): on stdio each session is a child process, so one subject cannot exhaust the machine. */
    maxSessionsPerUser: number
    /** Sessions opened without a token (anonymous discovery), each a stdio child: kept few. Default 16. */
    maxAnonymousSessions: number
    /** Sessions one subject (anonymous discovery counting as one) may open per minute; above it 429. Default 10. */
    newSessionsPerUserPerMinute: number
    /** Sessions the gateway opens per minute for everyone together (child processes spawned, on stdio); above it 503. Default 120. */
    newSessionsPerMinute: number
  }
  limits: {
    maxBodyBytes: number
    /** Messages in one JSON-RPC batch; a larger batch gets 400 before anything else. Default 100. */
    maxBatchMessages: number
    upstreamTimeoutMs: number
    shutdownGraceMs: number
    /** A GET stream idle this long is ended; `undefined` (0 in the file) keeps idle streams open. */
    streamIdleTimeoutMs: number | undefined
    /** The request line and headers must arrive within this (Node's `headersTimeout`); else 408 and the connection closes. */
    headersTimeoutMs: number
    /** The whole request, body included, must arrive within this (Node's `requestTimeout`); responses are not limited. */
    requestTimeoutMs: number
    /** An idle keep-alive connection is closed after this. */
    keepAliveTimeoutMs: number
    /** A body sent without a token (anonymous discovery) is read up to this; a larger one is refused unread (401). */
    maxAnonymousBodyBytes: number
    /** Requests without a token whose bodies are being read at once; more get 503 without being read. */
    maxAnonymousBodyReads: number
  }
  tls: { cert: string; key: string } | undefined
  trustProxy: boolean
  /**
   * Browser origins, besides the public URL's, allowed to call the MCP endpoint and the authorization server
   * (`allowed_origins`); a request whose `Origin` is another one gets 403 (DNS rebinding, cross-site calls).
   */
  allowedOrigins: readonly string[]
  logLevel: string
  /** The embedded authorization server, when no external one is configured; it serves on the MCP URL's origin. */
  authorizationServer: EmbeddedAuthorizationConfig | undefined
}

/** What the command line gave; `undefined` means "not given", so the environment and the file apply. */
export interface GatewayFlags {
  upstream?: string | undefined
  port?: string | undefined
  address?: string | undefined
  config?: string | undefined
  publicUrl?: string | undefined
  logLevel?: string | undefined
  /** The stdio command and its arguments, from after `--`. */
  command?: string[] | undefined
  dataDir?: string | undefined
  /** Development mode: loopback only, a throwaway store, the test user signed in and consent approved. */
  dev?: boolean | undefined
  /** `--stdio-shared`: one stdio child for every session. */
  stdioShared?: boolean | undefined
}

export { GatewayConfigError }

const fail = (message: string): never => {
  throw new GatewayConfigError(message)
}

const DEFAULTS = {
  port: 8000,
  address: '127.0.0.1',
  idleTimeoutSeconds: 900,
  maxSessions: 1000,
  maxAnonymousSessions: 16,
  maxBodyBytes: 1_048_576,
  maxBatchMessages: 100,
  upstreamTimeoutMs: 30_000,
  shutdownGraceMs: 10_000,
  streamIdleTimeoutMs: 300_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxAnonymousBodyBytes: 65_536,
  maxAnonymousBodyReads: 64,
  maxSessionsPerUser: 10,
  newSessionsPerUserPerMinute: 10,
  newSessionsPerMinute: 120,
  logLevel: 'info',
}

const FILE_KEYS = [
  'upstream',
  'command',
  'args',
  'env',
  'cwd',
  'transport',
  'public_url',
  'tools',
  'default_tool_scopes',
  'allow_anonymous_mcp_discovery',
  'allow_machine_clients',
  'upstream_credentials',
  'sessions',
  'limits',
  'tls',
  'trust_proxy',
  'allowed_origins',
  'log_level',
  'data_dir',
  'storage',
  'secret',
  'authorization_server',
  'stdio',
]

/**
 * Merges flags over environment over file over defaults, and validates the result with messages that name
 * the setting, where it came from, and the value.
 */
export async function loadGatewayConfig(
  flags: GatewayFlags,
  env: Record<string, string | undefined>,
): Promise<GatewayConfig> {
  const configPath = flags.config ?? env.GATEHOUSE_CONFIG
  const file = configPath ? await readConfigFile(configPath) : {}
  const transport = record(file.transport, 'transport')
  only(transport, ['type', 'port', 'address', 'auth'], 'transport')
  if (transport.type !== undefined && transport.type !== 'streamable_http') {
    fail(
      `transport.type ${JSON.stringify(transport.type)} is not supported; gatehouse serves streamable_http`,
    )
  }
  const auth = transport.auth
  const sessions = record(file.sessions, 'sessions')
  only(sessions, SESSION_KEYS, 'sessions')
  const limits = record(file.limits, 'limits')
  only(limits, [...LIMIT_KEYS, ...CONNECTION_LIMIT_KEYS], 'limits')
  const upstreamMode = upstreamCredentials(file, env, auth)
  const tls = record(file.tls, 'tls')
  only(tls, ['cert', 'key'], 'tls')
  const cert = env.GATEHOUSE_TLS_CERT ?? optionalString(tls.cert, 'tls.cert')
  const key = env.GATEHOUSE_TLS_KEY ?? optionalString(tls.key, 'tls.key')
  if ((cert === undefined) !== (key === undefined)) fail('TLS needs both tls.cert and tls.key')

  const publicUrl = checkPublicUrl(
    flags.publicUrl ??
      env.GATEHOUSE_PUBLIC_URL ??
      optionalString(file.public_url, 'public_url') ??
      optionalString(record(auth, 'transport.auth').resource, 'transport.auth.resource'),
  )
  const embedded = usesEmbeddedAuthorizationServer(env, auth)
  if (flags.dev && !embedded) {
    fail('--dev runs the embedded authorization server: unset OAUTH_ISSUER_URL and transport.auth.servers')
  }
  const guardOptions = embedded
    ? (resource: string) => embeddedGuardOptions(auth, file, resource)
    : guardOptionsSource(auth, env)
  // Fail now, on a placeholder resource, rather than after listening.
  guardOptions(publicUrl ?? 'http://127.0.0.1/mcp')

  const address = checkString(
    flags.address ?? env.GATEHOUSE_ADDRESS ?? transport.address ?? DEFAULTS.address,
    'address',
  )
  if (flags.dev) checkDevelopmentBinding(address, publicUrl)
  const maxSessions = integer(sessions.max_sessions ?? DEFAULTS.maxSessions, 'sessions.max_sessions', 1)
  return {
    upstream: upstreamFrom(flags, env, file),
    port: integer(flags.port ?? env.GATEHOUSE_PORT ?? transport.port ?? DEFAULTS.port, 'port', 0, 65_535),
    address,
    publicUrl,
    guardOptions,
    tools: toolScopes(file.tools),
    defaultToolScopes: stringList(file.default_tool_scopes ?? [], 'default_tool_scopes'),
    usersOnlyTools: usersOnlyTools(file.tools),
    allowMachineClients: boolean(
      env.GATEHOUSE_ALLOW_MACHINE_CLIENTS ?? file.allow_machine_clients ?? false,
      'allow_machine_clients',
    ),
    allowAnonymousDiscovery: boolean(
      env.GATEHOUSE_ALLOW_ANONYMOUS_MCP_DISCOVERY ??
        file.allow_anonymous_mcp_discovery ??
        record(auth, 'transport.auth').allow_anonymous_mcp_discovery ??
        false,
      'allow_anonymous_mcp_discovery',
    ),
    upstreamCredentials: upstreamMode,
    sessions: {
      idleTimeoutSeconds: integer(
        sessions.idle_timeout_seconds ?? DEFAULTS.idleTimeoutSeconds,
        'sessions.idle_timeout_seconds',
        1,
      ),
      maxSessions,
      maxSessionsPerUser: integer(
        sessions.max_sessions_per_user ?? Math.min(maxSessions, DEFAULTS.maxSessionsPerUser),
        'sessions.max_sessions_per_user',
        1,
      ),
      maxAnonymousSessions: integer(
        sessions.max_anonymous_sessions ?? DEFAULTS.maxAnonymousSessions,
        'sessions.max_anonymous_sessions',
        0,
      ),
      newSessionsPerUserPerMinute: integer(
        sessions.new_sessions_per_user_per_minute ?? DEFAULTS.newSessionsPerUserPerMinute,
        'sessions.new_sessions_per_user_per_minute',
        1,
      ),
      newSessionsPerMinute: integer(
        sessions.new_sessions_per_minute ?? DEFAULTS.newSessionsPerMinute,
        'sessions.new_sessions_per_minute',
        1,
      ),
    },
    limits: {
      maxBodyBytes: integer(
        env.GATEHOUSE_MAX_BODY_BYTES ?? limits.max_body_bytes ?? DEFAULTS.maxBodyBytes,
        'limits.max_body_bytes',
        1,
      ),
      maxBatchMessages: integer(
        limits.max_batch_messages ?? DEFAULTS.maxBatchMessages,
        'limits.max_batch_messages',
        1,
      ),
      upstreamTimeoutMs: integer(
        env.GATEHOUSE_UPSTREAM_TIMEOUT_MS ?? limits.upstream_timeout_ms ?? DEFAULTS.upstreamTimeoutMs,
        'limits.upstream_timeout_ms',
        1,
      ),
      shutdownGraceMs: integer(
        limits.shutdown_grace_ms ?? DEFAULTS.shutdownGraceMs,
        'limits.shutdown_grace_ms',
        0,
      ),
      streamIdleTimeoutMs:
        integer(
          env.GATEHOUSE_STREAM_IDLE_TIMEOUT_MS ??
            limits.stream_idle_timeout_ms ??
            DEFAULTS.streamIdleTimeoutMs,
          'limits.stream_idle_timeout_ms',
          0,
        ) || undefined,
      ...connectionLimits(limits),
    },
    tls: cert !== undefined && key !== undefined ? { cert, key } : undefined,
    trustProxy: boolean(env.GATEHOUSE_TRUST_PROXY ?? file.trust_proxy ?? false, 'trust_proxy'),
    allowedOrigins: allowedOrigins(env.GATEHOUSE_ALLOWED_ORIGINS?.split(',') ?? file.allowed_origins ?? []),
    logLevel: checkString(
      flags.logLevel ?? env.GATEHOUSE_LOG_LEVEL ?? file.log_level ?? DEFAULTS.logLevel,
      'log_level',
    ),
    authorizationServer: embedded ? embeddedAuthorizationConfig(flags, env, file) : undefined,
  }
}

const SESSION_KEYS = [
  'idle_timeout_seconds',
  'max_sessions',
  'max_sessions_per_user',
  'max_anonymous_sessions',
  'new_sessions_per_user_per_minute',
  'new_sessions_per_minute',
]
const LIMIT_KEYS = [
  'max_body_bytes',
  'max_batch_messages',
  'upstream_timeout_ms',
  'shutdown_grace_ms',
  'stream_idle_timeout_ms',
]

/** What a peer may hold before it is known: time to send its request, and an anonymous body's size. */
const CONNECTION_LIMIT_KEYS = [
  'headers_timeout_ms',
  'request_timeout_ms',
  'keep_alive_timeout_ms',
  'max_anonymous_body_bytes',
  'max_anonymous_body_reads',
]

function connectionLimits(limits: Record<string, unknown>) {
  const headersTimeoutMs = integer(
    limits.headers_timeout_ms ?? DEFAULTS.headersTimeoutMs,
    'limits.headers_timeout_ms',
    1,
  )
  const requestTimeoutMs = integer(
    limits.request_timeout_ms ?? DEFAULTS.requestTimeoutMs,
    'limits.request_timeout_ms',
    1,
  )
  // Node refuses a header timeout longer than the request timeout, which includes the headers.
  if (headersTimeoutMs > requestTimeoutMs) {
    fail(
      `limits.headers_timeout_ms (${headersTimeoutMs}) must not exceed limits.request_timeout_ms (${requestTimeoutMs}): ` +
        'the request timeout covers the headers too',
    )
  }
  return {
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: integer(
      limits.keep_alive_timeout_ms ?? DEFAULTS.keepAliveTimeoutMs,
      'limits.keep_alive_timeout_ms',
      1,
    ),
    maxAnonymousBodyBytes: integer(
      limits.max_anonymous_body_bytes ?? DEFAULTS.maxAnonymousBodyBytes,
      'limits.max_anonymous_body_bytes',
      1,
    ),
    maxAnonymousBodyReads: integer(
      limits.max_anonymous_body_reads ?? DEFAULTS.maxAnonymousBodyReads,
      'limits.max_anonymous_body_reads',
      1,
    ),
  }
}

/**
 * `upstream_credentials.mode`, and Apollo's `transport.auth.disable_auth_token_passthrough` when given:
 * `false` asks for passthrough, `true` forbids it. A file where the two disagree is refused rather than
 * resolved silently one way or the other.
 */
function upstreamCredentials(
  file: Record<string, unknown>,
  env: Record<string, string | undefined>,
  auth: unknown,
): UpstreamCredentialsMode {
  const credentials = record(file.upstream_credentials, 'upstream_credentials')
  only(credentials, ['mode'], 'upstream_credentials')
  const mode = credentials.mode ?? env.GATEHOUSE_UPSTREAM_CREDENTIALS
  if (PLANNED_CREDENTIAL_MODES.has(mode)) {
    fail(
      `upstream_credentials.mode ${mode} is not available yet (token exchange and the token vault come in a later release); use none or passthrough`,
    )
  }
  if (mode !== undefined && mode !== 'none' && mode !== 'passthrough') {
    return fail(`upstream_credentials.mode ${JSON.stringify(mode)} must be none or passthrough`)
  }
  const disable = record(auth, 'transport.auth').disable_auth_token_passthrough
  if (disable === undefined) return mode ?? 'none'
  const implied = boolean(disable, 'transport.auth.disable_auth_token_passthrough') ? 'none' : 'passthrough'
  if (mode !== undefined && mode !== implied) {
    fail(
      `transport.auth.disable_auth_token_passthrough: ${disable} contradicts upstream_credentials.mode ${mode}; ` +
        `remove one of them (disable_auth_token_passthrough: true means mode none, false means mode passthrough)`,
    )
  }
  return implied
}

/** `allowed_origins`: each an origin exactly (scheme, host, port), as browsers send it in `Origin`. */
function allowedOrigins(value: unknown): string[] {
  return stringList(value, 'allowed_origins').map((entry) => {
    const origin = entry.trim()
    const url = URL.parse(origin)
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin) {
      fail(
        `allowed_origins entry ${JSON.stringify(entry)} must be an origin such as https://app.example.com ` +
          '(scheme, host and optional port; no path, no trailing slash)',
      )
    }
    return origin
  })
}

/** Development mode signs anyone in as the test user: nothing but this machine may reach it. */
function checkDevelopmentBinding(address: string, publicUrl: string | undefined): void {
  if (!isLoopback(address)) {
    fail(
      `--dev listens on loopback only (127.0.0.1 or ::1), not ${address}: it signs anyone in as the test user`,
    )
  }
  if (publicUrl !== undefined && !isLoopback(new URL(publicUrl).hostname)) {
    fail(`--dev needs a loopback public URL, not ${publicUrl}: it signs anyone in as the test user`)
  }
}

export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    return fail(`cannot read the configuration file ${path}: ${(error as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = parseYaml(text)
  } catch (error) {
    return fail(`${path} is not valid YAML: ${(error as Error).message}`)
  }
  const file = record(parsed ?? {}, path)
  only(file, FILE_KEYS, path)
  return file
}

function guardOptionsSource(
  auth: unknown,
  env: Record<string, string | undefined>,
): (resource: string) => GuardOptions {
  if (auth === undefined) return (resource) => guardOptionsFromEnv(env, resource)
  return (resource) => guardOptionsFromAuthBlock(auth, resource)
}

function upstreamFrom(
  flags: GatewayFlags,
  env: Record<string, string | undefined>,
  file: Record<string, unknown>,
): UpstreamConfig {
  const stdio = stdioBlock(file)
  const fromFlags = flags.command?.length ? flags.command : undefined
  const url = flags.upstream ?? (fromFlags ? undefined : (env.GATEHOUSE_UPSTREAM ?? file.upstream))
  const command =
    fromFlags ??
    (url === undefined && file.command !== undefined
      ? [file.command, ...stringList(file.args ?? [], 'args')]
      : undefined)
  if (url !== undefined && command !== undefined)
    fail('give either --upstream (an HTTP MCP server) or a command after --, not both')
  if (command !== undefined) {
    const [program, ...args] = command
    return {
      kind: 'stdio',
      command: checkString(program, 'command'),
      args: args.map((a) => checkString(a, 'args')),
      env: stringMap(file.env ?? {}, 'env'),
      cwd: optionalString(file.cwd, 'cwd'),
      shared: boolean(
        flags.stdioShared ?? env.GATEHOUSE_STDIO_SHARED ?? stdio.shared ?? false,
        'stdio.shared',
      ),
    }
  }
  if (url === undefined) {
    return fail(
      'no upstream: give --upstream http://host:port/mcp, or the stdio command after --, e.g. gatehouse serve -- npx -y @modelcontextprotocol/server-everything',
    )
  }
  let parsed: URL
  try {
    parsed = new URL(checkString(url, 'upstream'))
  } catch {
    return fail(`upstream ${JSON.stringify(url)} is not a URL`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    fail(`upstream ${url} must be an http or https URL`)
  return { kind: 'http', url: parsed }
}

function stdioBlock(file: Record<string, unknown>): Record<string, unknown> {
  const block = record(file.stdio, 'stdio')
  only(block, ['shared'], 'stdio')
  return block
}

function checkPublicUrl(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return fail(`public_url ${JSON.stringify(value)} is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`public_url ${value} must be an https URL`)
  if (url.search || url.hash) fail(`public_url ${value} must have no query and no fragment`)
  if (url.pathname === '/') fail(`public_url ${value} needs the MCP path, e.g. ${url.origin}/mcp`)
  return value
}

function toolScopes(value: unknown): Record<string, readonly string[]> {
  const tools = record(value, 'tools')
  return Object.fromEntries(
    Object.entries(tools).map(([name, entry]) => {
      const tool = record(entry, `tools.${name}`)
      only(tool, ['scopes', 'users_only'], `tools.${name}`)
      return [name, stringList(tool.scopes ?? [], `tools.${name}.scopes`)]
    }),
  )
}

function usersOnlyTools(value: unknown): ReadonlySet<string> {
  const tools = Object.entries(record(value, 'tools'))
  return new Set(
    tools
      .filter(([name, entry]) =>
        boolean(record(entry, `tools.${name}`).users_only ?? false, `tools.${name}.users_only`),
      )
      .map(([name]) => name),
  )
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) return fail(`${what} must be a mapping`)
  return value as Record<string, unknown>
}

function checkString(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') return fail(`${what} must be a non-empty string`)
  return value
}

function optionalString(value: unknown, what: string): string | undefined {
  return value === undefined ? undefined : checkString(value, what)
}

function stringList(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((s) => typeof s === 'string' && s !== '')) {
    return fail(`${what} must be a list of non-empty strings`)
  }
  return [...value]
}

function stringMap(value: unknown, what: string): Record<string, string> {
  const map = record(value, what)
  for (const [k, v] of Object.entries(map)) if (typeof v !== 'string') fail(`${what}.${k} must be a string`)
  return map as Record<string, string>
}

function integer(value: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    return fail(`${what} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`)
  }
  return n
}

function boolean(value: unknown, what: string): boolean {
  if (typeof value === 'boolean') return value
  if (value === 'true' || value === '1') return true
  if (value === 'false' || value === '0') return false
  return fail(`${what} must be true or false, got ${JSON.stringify(value)}`)
}
