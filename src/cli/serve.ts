import { parseArgs } from 'node:util'
import { GatewayConfigError, loadGatewayConfig } from '../gateway/config.ts'
import { createGatewayLogger } from '../gateway/logger.ts'
import { startGateway } from '../gateway/server.ts'
import { isGuardError } from '../guard/index.ts'

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
  -h, --help           this help

Environment:
  OAUTH_ISSUER_URL     the issuer of your identity provider (required unless the file has transport.auth)
  OAUTH_AUDIENCE       accepted token audiences, comma-separated; default the canonical MCP URL
  GATEHOUSE_UPSTREAM_CREDENTIALS   none (default) or passthrough
  GATEHOUSE_ALLOW_ANONYMOUS_MCP_DISCOVERY, GATEHOUSE_TRUST_PROXY          true or false
  GATEHOUSE_MAX_BODY_BYTES, GATEHOUSE_UPSTREAM_TIMEOUT_MS                 integers
  GATEHOUSE_TLS_CERT, GATEHOUSE_TLS_KEY                                   PEM file paths

Configuration file (flags win over the environment, which wins over the file):
  upstream: http://127.0.0.1:3001/mcp     # or, for stdio:
  command: npx
  args: [-y, '@modelcontextprotocol/server-everything']
  env: { KEY: value }                      # added to the child's environment
  cwd: /srv/mcp
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
  public_url: https://mcp.example.com/mcp
  tools:                                   # a tools/call needs the tool's scopes: 403 insufficient_scope
    delete_file: { scopes: [files:write] } # otherwise; tools/list shows only the callable tools
  default_tool_scopes: []                  # for tools not listed
  allow_anonymous_mcp_discovery: false     # initialize and tools/list without a token
  upstream_credentials:
    mode: none                             # none: the token is stripped and the upstream gets the identity
                                           # as X-Gatehouse-* headers and a signed X-Gatehouse-Identity JWT;
                                           # passthrough forwards the client token (a spec violation; warned)
  sessions: { idle_timeout_seconds: 900, max_sessions: 1000 }
  limits: { max_body_bytes: 1048576, upstream_timeout_ms: 30000, shutdown_grace_ms: 10000 }
  tls: { cert: cert.pem, key: key.pem }
  trust_proxy: false                       # log the client address from X-Forwarded-For
  log_level: info

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
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  })
  if (values.help) {
    process.stdout.write(SERVE_HELP)
    return
  }
  let gateway: Awaited<ReturnType<typeof startGateway>>
  try {
    const config = await loadGatewayConfig(
      {
        upstream: values.upstream,
        port: values.port,
        address: values.address,
        publicUrl: values['public-url'],
        config: values.config,
        logLevel: values['log-level'],
        command,
      },
      process.env,
    )
    gateway = await startGateway(config, { logger: createGatewayLogger(config.logLevel) })
  } catch (error) {
    if (error instanceof GatewayConfigError || isGuardError(error)) {
      process.stderr.write(`gatehouse serve: ${error.message}\n`)
      process.exitCode = 1
      return
    }
    throw error
  }
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      void gateway.close().then(resolve)
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
