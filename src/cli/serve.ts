import { parseArgs } from 'node:util'
import { DEV_USERNAME } from '../auth-server/index.ts'
import { loadGatewayConfig } from '../gateway/config.ts'
import { createGatewayLogger } from '../gateway/logger.ts'
import type { Gateway } from '../gateway/server.ts'
import { startServe } from './embedded_server.ts'
import { checkStdioCommand, probeUpstream } from './preflight.ts'

export const SERVE_HELP = `Usage:
  gatehouse serve --upstream <url> [options]        protect an MCP server that speaks Streamable HTTP
  gatehouse serve [options] -- <command> [args...]  protect a stdio MCP server (one process per session)

Options:
  --upstream <url>     the upstream MCP endpoint, e.g. http://127.0.0.1:3001/mcp   (GATEHOUSE_UPSTREAM)
  --port <n>           port to listen on; default 8000                           (GATEHOUSE_PORT)
  --address <addr>     address to listen on; default 127.0.0.1                   (GATEHOUSE_ADDRESS)
  --public-url <url>   the canonical MCP URL clients use, e.g. https://mcp.example.com/mcp; it is the
                       resource in the metadata and the token audience; default http://<address>:<port>/mcp
                                                                                 (GATEHOUSE_PUBLIC_URL)
  --config <file>      a YAML file (below)                                       (GATEHOUSE_CONFIG)
  --log-level <level>  trace, debug, info, warn, error; default info             (GATEHOUSE_LOG_LEVEL)
  --data-dir <dir>     the embedded authorization server's directory (created 0700); default ./.gatehouse
                                                                                 (GATEHOUSE_DATA_DIR)
  --stdio-shared       one stdio process for every session and user instead of one per session; the
                       server cannot tell users apart (warned at start)          (GATEHOUSE_STDIO_SHARED)
  --dev                development mode: loopback only, a temporary store, the test user "${DEV_USERNAME}" signed
                       in and every consent approved without a page (for test harnesses; never in production)
  -h, --help           this help

Authorization server:
  With no OAUTH_ISSUER_URL and no transport.auth.servers, the embedded authorization server runs on the
  origin of the MCP URL (issuer = that origin): discovery, /authorize, /token, /register, sign-in pages.
  Accounts, consents and keys: gatehouse users, gatehouse keys, gatehouse consents (same --config/--data-dir).

Environment:
  OAUTH_ISSUER_URL     the issuer of an external identity provider (or transport.auth.servers in the file)
  OAUTH_AUDIENCE       accepted token audiences, comma-separated; default the canonical MCP URL
  OAUTH_ACCEPT_PLAIN_JWT  true: accept typ JWT tokens (Auth0, Okta, Entra, Keycloak) of any accepted
                       audience; default false, which accepts them only when their aud is the MCP URL
  GATEHOUSE_STORAGE_URL   storage.url: postgres://user:password@host/db for several instances
  GATEHOUSE_SECRET     32+ characters encrypting the signing keys and signing cookies; default generated
                       into <data_dir>/secret (0600) on first start: several instances must share it
  GATEHOUSE_UPSTREAM_CREDENTIALS   none (default) or passthrough
  GATEHOUSE_ALLOW_ANONYMOUS_MCP_DISCOVERY, GATEHOUSE_TRUST_PROXY,
  GATEHOUSE_ALLOW_MACHINE_CLIENTS                                         true or false
  GATEHOUSE_MAX_BODY_BYTES, GATEHOUSE_UPSTREAM_TIMEOUT_MS                 integers
  GATEHOUSE_TLS_CERT, GATEHOUSE_TLS_KEY                                   PEM file paths
  GATEHOUSE_ALLOWED_ORIGINS   allowed_origins, comma-separated

Configuration file (flags win over the environment, which wins over the file):
  upstream: http://127.0.0.1:3001/mcp     # or, for stdio:
  command: npx
  args: [-y, '@modelcontextprotocol/server-everything']
  env: { KEY: value }                      # the child's environment: these, plus PATH, HOME, USER, SHELL,
                                           # TERM, TMPDIR, TZ, LANG, LC_* of the gateway's (nothing else)
  cwd: /srv/mcp
  stdio: { shared: false }                 # true: one process for all sessions and users (weaker isolation)
  transport:                               # Apollo MCP Server's block is accepted as is
    type: streamable_http
    port: 8000
    address: 0.0.0.0
    auth:
      servers: [https://your-tenant.auth0.com/]
      audiences: [https://mcp.example.com/mcp]
      allow_any_audience: false
      scopes: [mcp]
      scope_mode: require_all              # require_all, require_any, disabled
      resource: https://mcp.example.com/mcp
      resource_documentation: https://example.com/docs
      allow_anonymous_mcp_discovery: false
      disable_auth_token_passthrough: true # Apollo's switch: false = upstream_credentials.mode passthrough
  public_url: https://mcp.example.com/mcp
  tools:                                   # a tools/call needs the tool's scopes: 403 insufficient_scope
    delete_file: { scopes: [files:write] } # otherwise; tools/list shows only the callable tools
    drop_table: { users_only: true }       # never called by a machine client, even with the scopes
  default_tool_scopes: []                  # for tools not listed
  allow_anonymous_mcp_discovery: false     # initialize and tools/list without a token
  allow_machine_clients: false             # accept tokens a client got for itself (client credentials,
                                           # no user: gty client_credentials, or sub = client_id); 403 otherwise
  upstream_credentials:
    mode: none                             # none: the token is stripped and the upstream gets the identity
                                           # as X-Gatehouse-* headers and a signed X-Gatehouse-Identity JWT;
                                           # passthrough forwards the client token (a spec violation; warned)
  sessions: { idle_timeout_seconds: 900, max_sessions: 1000,
              max_sessions_per_user: 100,      # default max_sessions / 10 (at least 1)
              max_anonymous_sessions: 16 }     # sessions opened without a token (anonymous discovery)
  limits: { max_body_bytes: 1048576, upstream_timeout_ms: 30000, shutdown_grace_ms: 10000,
            stream_idle_timeout_ms: 300000 }   # an idle GET stream is ended (0: never)
  tls: { cert: cert.pem, key: key.pem }
  trust_proxy: false                       # the client address (logs, rate limits) is the last
                                           # X-Forwarded-For entry, the one your proxy appended
  allowed_origins: [https://app.example]   # browser origins besides the public URL's that may call /mcp and
                                           # the authorization server; another Origin gets 403. On a loopback
                                           # bind, a Host other than the public URL's or localhost:<port> too
  log_level: info
  data_dir: ./.gatehouse                   # the embedded authorization server's state:
  storage: { url: postgres://gatehouse@db/gatehouse }   # default SQLite <data_dir>/gatehouse.db
  secret: <32+ characters>                 # prefer GATEHOUSE_SECRET
  authorization_server:                    # the embedded server (no external one configured)
    scopes: [mcp]                          # every request needs them (default [mcp]); offered with the tools' scopes
    scope_grants:                          # who may hold the tools' scopes: everyone holds scopes and
                                           # default_tool_scopes, nobody a scope under tools: until a rule gives it
      - { scopes: [files:write], users: [alice] }          # usernames as gatehouse users list shows them
      - { scopes: [admin], claim: { name: groups, value: admins, provider: corp } }  # upstream claim (a value,
                                           # or a list containing it) at the user's last sign-in there
    signing_algorithm: ES256               # ES256, EdDSA or RS256, for the key generated on first start
    ttl: { access_token: 600, refresh_token: 1209600 }  # seconds; also authorization_code, session, grant,
                                           # interaction, id_token, registered_client
    login:
      local_accounts: true                 # default when no upstream is given; gatehouse users add <name>
      upstream:                            # "Continue with <name>"; the redirect URI to register is printed at start
        - { id: corp, name: Corp SSO, issuer: https://corp.okta.com, client_id: abc, client_secret: xyz }
    registration: { enabled: true, rate_limit: { limit: 20, window_seconds: 60 } }  # RFC 7591 DCR
    cimd: { enabled: true, rate_limit: { limit: 10, window_seconds: 60 } }          # URL client ids
    clients:                               # static clients, RFC 7591 metadata; only these may use
      - { client_id: ci-bot, client_secret: <secret>, grant_types: [client_credentials], redirect_uris: [],
          response_types: [], scope: mcp,  # client_credentials; scope (required): all its tokens may carry
          resources: [https://mcp.example.com/mcp] }  # default: the MCP URL
      - { client_id: rs, client_secret: <secret>, grant_types: [], redirect_uris: [], response_types: [],
          resource_server: true }          # may introspect any token (others: only their own)
    # Registered (DCR) and metadata-document clients get authorization_code and refresh_token only.

Endpoints: the MCP URL, /.well-known/oauth-protected-resource[/path], /healthz, /readyz, /metrics.
A session belongs to the subject that created it; its id used with another subject's token gets 404.
`

/** `gatehouse serve`: runs the gateway until SIGINT or SIGTERM, then shuts it down gracefully. */
export async function runServe(argv: string[]): Promise<void> {
  const separator = argv.indexOf('--')
  const own = separator === -1 ? argv : argv.slice(0, separator)
  const command = separator === -1 ? undefined : argv.slice(separator + 1)
  const { values } = parseArgs({
    args: own,
    options: {
      upstream: { type: 'string' },
      port: { type: 'string' },
      address: { type: 'string' },
      'public-url': { type: 'string' },
      config: { type: 'string' },
      'log-level': { type: 'string' },
      'data-dir': { type: 'string' },
      dev: { type: 'boolean' },
      'stdio-shared': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  })
  if (values.help) {
    process.stdout.write(SERVE_HELP)
    return
  }
  const config = await loadGatewayConfig(
    {
      upstream: values.upstream,
      port: values.port,
      address: values.address,
      publicUrl: values['public-url'],
      config: values.config,
      logLevel: values['log-level'],
      command,
      dataDir: values['data-dir'],
      dev: values.dev,
      stdioShared: values['stdio-shared'],
    },
    process.env,
  )
  await checkStdioCommand(config.upstream, process.env)
  const logger = createGatewayLogger(config.logLevel)
  const gateway = await startServe(config, logger)
  if (config.authorizationServer?.dev) process.stderr.write(developmentBanner(gateway))
  const issuer = gateway.authorizationServer?.auth.issuer
  if (issuer)
    logger.info(
      `no OAUTH_ISSUER_URL: gatehouse runs its own authorization server at ${issuer} (accounts: gatehouse users add <name>); set OAUTH_ISSUER_URL to use your identity provider instead`,
    )
  const unanswered = await probeUpstream(config.upstream)
  if (unanswered) logger.warn(unanswered)
  await untilStopped(gateway)
}

/** Resolves once the gateway has shut down after SIGINT or SIGTERM. */
export function untilStopped(gateway: Gateway): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      void gateway.close().then(resolve)
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}

function developmentBanner(gateway: Gateway): string {
  const rule = '!'.repeat(78)
  return `${rule}
!!  GATEHOUSE DEVELOPMENT MODE (--dev): NEVER EXPOSE THIS
!!  Every authorization signs in the test user "${DEV_USERNAME}" and is approved without asking.
!!  Loopback only; the store and the keys are temporary and are deleted at exit.
!!  MCP URL: ${gateway.resource}
!!  Issuer:  ${gateway.authorizationServer?.auth.issuer}
${rule}
`
}
