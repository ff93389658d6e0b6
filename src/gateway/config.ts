import { type GuardSettings, guardOptionsFor, guardSettings } from '../config/apollo.ts'
import {
  type EmbeddedAuthorizationConfig,
  embeddedAuthorizationConfig,
  embeddedGuardSettings,
  usesEmbeddedAuthorizationServer,
} from '../config/embedded.ts'
import { fail } from '../config/errors.ts'
import { loadSettings, type SettingsFlags } from '../config/load.ts'
import type { Settings } from '../config/schema.ts'
import { isLoopback } from '../guard/lib/http.ts'

export type UpstreamCredentialsMode = NonNullable<Settings['upstream_credentials']['mode']>

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
  /**
   * The guard's options but the resource (the canonical MCP URL, known once the gateway listens when
   * `publicUrl` is unset): complete them with `guardOptionsFor`. With the embedded authorization server they
   * trust no server: the gateway trusts the one it starts.
   */
  guard: GuardSettings
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
  /** The `upstream_credentials` block, for the mode to read its own settings (src/gateway/credentials/). */
  upstreamCredentialSettings: Settings['upstream_credentials']
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
  /**
   * Redis for the state several instances must share (`shared_state`); `undefined`: kept in this process's
   * memory, as one instance needs.
   */
  sharedState: { redisUrl: string; keyPrefix: string } | undefined
  /** The embedded authorization server, when no external one is configured; it serves on the MCP URL's origin. */
  authorizationServer: EmbeddedAuthorizationConfig | undefined
}

/** What the command line gave; `undefined` means "not given", so the environment and the file apply. */
export type GatewayFlags = SettingsFlags

export { guardOptionsFor }

/**
 * `gatehouse serve`'s configuration: the settings of src/config/schema.ts (flags over environment over file
 * over defaults, validated there), shaped for the gateway, with the checks that span several settings.
 */
export async function loadGatewayConfig(
  flags: GatewayFlags,
  env: Record<string, string | undefined>,
): Promise<GatewayConfig> {
  const { settings, sources } = await loadSettings(flags, env)
  const { transport, sessions, limits, tls } = settings
  const auth = transport.auth ?? {}
  if ((tls.cert === undefined) !== (tls.key === undefined)) fail('TLS needs both tls.cert and tls.key')
  // Node refuses a header timeout longer than the request timeout, which includes the headers.
  if (limits.headers_timeout_ms > limits.request_timeout_ms) {
    fail(
      `limits.headers_timeout_ms (${limits.headers_timeout_ms}) must not exceed limits.request_timeout_ms (${limits.request_timeout_ms}): ` +
        'the request timeout covers the headers too',
    )
  }
  const publicUrl = checkPublicUrl(settings.public_url ?? auth.resource)
  const embedded = usesEmbeddedAuthorizationServer(settings)
  if (flags.dev && !embedded) {
    fail('--dev runs the embedded authorization server: unset OAUTH_ISSUER_URL and transport.auth.servers')
  }
  if (flags.dev) checkDevelopmentBinding(transport.address, publicUrl)
  if (!embedded && settings.authorization_server.console.admins?.length) {
    fail(
      'authorization_server.console signs administrators in at the embedded authorization server: unset OAUTH_ISSUER_URL and transport.auth.servers, or remove the console',
    )
  }
  const upstream = upstreamFrom(flags, settings, sources.get('upstream') === '--upstream')
  checkVaultConnection(settings, embedded, upstream)
  return {
    upstream,
    port: transport.port,
    address: transport.address,
    publicUrl,
    guard: embedded ? embeddedGuardSettings(settings) : guardSettings(auth),
    tools: Object.fromEntries(Object.entries(settings.tools).map(([name, tool]) => [name, tool.scopes])),
    defaultToolScopes: settings.default_tool_scopes,
    usersOnlyTools: new Set(
      Object.entries(settings.tools)
        .filter(([, tool]) => tool.users_only)
        .map(([name]) => name),
    ),
    allowMachineClients: settings.allow_machine_clients,
    allowAnonymousDiscovery:
      settings.allow_anonymous_mcp_discovery ?? auth.allow_anonymous_mcp_discovery ?? false,
    upstreamCredentials: upstreamCredentials(settings),
    upstreamCredentialSettings: settings.upstream_credentials,
    sessions: {
      idleTimeoutSeconds: sessions.idle_timeout_seconds,
      maxSessions: sessions.max_sessions,
      maxSessionsPerUser: sessions.max_sessions_per_user ?? Math.min(sessions.max_sessions, 10),
      maxAnonymousSessions: sessions.max_anonymous_sessions,
      newSessionsPerUserPerMinute: sessions.new_sessions_per_user_per_minute,
      newSessionsPerMinute: sessions.new_sessions_per_minute,
    },
    limits: {
      maxBodyBytes: limits.max_body_bytes,
      maxBatchMessages: limits.max_batch_messages,
      upstreamTimeoutMs: limits.upstream_timeout_ms,
      shutdownGraceMs: limits.shutdown_grace_ms,
      streamIdleTimeoutMs: limits.stream_idle_timeout_ms || undefined,
      headersTimeoutMs: limits.headers_timeout_ms,
      requestTimeoutMs: limits.request_timeout_ms,
      keepAliveTimeoutMs: limits.keep_alive_timeout_ms,
      maxAnonymousBodyBytes: limits.max_anonymous_body_bytes,
      maxAnonymousBodyReads: limits.max_anonymous_body_reads,
    },
    tls: tls.cert !== undefined && tls.key !== undefined ? { cert: tls.cert, key: tls.key } : undefined,
    trustProxy: settings.trust_proxy,
    allowedOrigins: settings.allowed_origins.map((origin) => origin.trim()),
    logLevel: settings.log_level,
    sharedState:
      settings.shared_state.redis_url === undefined
        ? undefined
        : { redisUrl: settings.shared_state.redis_url, keyPrefix: settings.shared_state.key_prefix },
    authorizationServer: embedded ? embeddedAuthorizationConfig(settings, flags.dev === true) : undefined,
  }
}

/**
 * `upstream_credentials.mode`, and Apollo's `transport.auth.disable_auth_token_passthrough` when given:
 * `false` asks for passthrough, `true` forbids it. A file where the two disagree is refused rather than
 * resolved silently one way or the other.
 */
function upstreamCredentials(settings: Settings): UpstreamCredentialsMode {
  const { mode } = settings.upstream_credentials
  const disable = settings.transport.auth?.disable_auth_token_passthrough
  if (disable === undefined) return mode ?? 'none'
  const implied = disable ? 'none' : 'passthrough'
  if (mode !== undefined && mode !== implied) {
    fail(
      `transport.auth.disable_auth_token_passthrough: ${disable} contradicts upstream_credentials.mode ${mode}; ` +
        `remove one of them (disable_auth_token_passthrough: true means mode none, false means mode passthrough)`,
    )
  }
  return implied
}

/**
 * Mode `vault` injects a token the embedded authorization server's vault holds for the user: it needs that
 * server (where Gatehouse knows the user), an HTTP upstream (a stdio child gets no per-request headers), and
 * a declared connection.
 */
/** `upstream_credentials.connection` names a declared vault connection, and only with mode `vault`. */
function checkVaultConnection(settings: Settings, embedded: boolean, upstream: UpstreamConfig): void {
  const { mode, connection } = settings.upstream_credentials
  if (mode !== 'vault') {
    if (connection !== undefined) fail('upstream_credentials.connection is only for mode vault')
    return
  }
  if (!embedded)
    fail(
      'upstream_credentials.mode vault needs the embedded authorization server: unset OAUTH_ISSUER_URL and transport.auth.servers',
    )
  if (upstream.kind !== 'http')
    fail('upstream_credentials.mode vault needs an HTTP upstream: a stdio server gets no per-request headers')
  const declared = settings.authorization_server.vault.connections.map((entry) => entry.id)
  if (connection === undefined || !declared.includes(connection))
    fail(
      `upstream_credentials.connection must name one of authorization_server.vault.connections (${declared.join(', ') || 'none declared'})`,
    )
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

/** The command after `--` wins over an upstream URL from the environment or the file, not over `--upstream`. */
function upstreamFrom(flags: GatewayFlags, settings: Settings, upstreamFlag: boolean): UpstreamConfig {
  const fromFlags = flags.command?.length ? flags.command : undefined
  const url = fromFlags && !upstreamFlag ? undefined : settings.upstream
  const command =
    fromFlags ??
    (url === undefined && settings.command !== undefined ? [settings.command, ...settings.args] : undefined)
  if (url !== undefined && command !== undefined)
    fail('give either --upstream (an HTTP MCP server) or a command after --, not both')
  if (command !== undefined) {
    const [program, ...args] = command
    if (!program || args.includes('')) fail('the command after -- must be non-empty strings')
    return {
      kind: 'stdio',
      command: program as string,
      args,
      env: settings.env,
      cwd: settings.cwd,
      shared: settings.stdio.shared,
    }
  }
  if (url === undefined) {
    return fail(
      'no upstream: give --upstream http://host:port/mcp, or the stdio command after --, e.g. gatehouse serve -- npx -y @modelcontextprotocol/server-everything',
    )
  }
  const parsed = URL.parse(url) ?? fail(`upstream ${JSON.stringify(url)} is not a URL`)
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    fail(`upstream ${url} must be an http or https URL`)
  return { kind: 'http', url: parsed }
}

function checkPublicUrl(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const url = URL.parse(value) ?? fail(`public_url ${JSON.stringify(value)} is not a URL`)
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`public_url ${value} must be an https URL`)
  if (url.search || url.hash) fail(`public_url ${value} must have no query and no fragment`)
  if (url.pathname === '/') fail(`public_url ${value} needs the MCP path, e.g. ${url.origin}/mcp`)
  return value
}
