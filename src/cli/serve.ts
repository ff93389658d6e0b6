import { parseArgs } from 'node:util'
import { DEV_USERNAME } from '../auth-server/index.ts'
import { settingsHelp } from '../config/docs.ts'
import { loadGatewayConfig } from '../gateway/config.ts'
import { createGatewayLogger } from '../gateway/logger.ts'
import type { Gateway } from '../gateway/server.ts'
import { startServe } from './embedded_server.ts'
import { checkStdioCommand, probeUpstream } from './preflight.ts'

export const SERVE_HELP = `Usage:
  gatehouse serve --upstream <url> [options]        protect an MCP server that speaks Streamable HTTP
  gatehouse serve [options] -- <command> [args...]  protect a stdio MCP server (one process per session)

${settingsHelp()}
Authorization server:
  With no OAUTH_ISSUER_URL and no transport.auth.servers, the embedded authorization server runs on the
  origin of the MCP URL (issuer = that origin): discovery, /authorize, /token, /register, sign-in pages.
  Accounts, consents and keys: gatehouse users, gatehouse keys, gatehouse consents (same --config/--data-dir).
  --dev signs in the test user "${DEV_USERNAME}". Registered (DCR) and metadata-document clients get
  authorization_code and refresh_token only.

Endpoints: the MCP URL, /.well-known/oauth-protected-resource[/path], /healthz, /readyz, /metrics, and the
admin console at /admin when authorization_server.console.admins names administrators (docs/console.md).
A session belongs to the subject that created it; its id used with another subject's token gets 404.
All settings, with their defaults: docs/configuration.md.

Examples:
  gatehouse serve --dev -- npx -y @modelcontextprotocol/server-everything   # try it on this machine
  gatehouse serve --upstream http://127.0.0.1:3001/mcp --public-url https://mcp.example.com/mcp
  OAUTH_ISSUER_URL=https://your-tenant.auth0.com/ gatehouse serve --upstream http://127.0.0.1:3001/mcp
  gatehouse serve --config gatehouse.yaml
`

/** The flags of `gatehouse serve`; each is a setting of src/config/schema.ts (a test keeps them in step). */
export const SERVE_OPTIONS = {
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
} as const

/** `gatehouse serve`: runs the gateway until SIGINT or SIGTERM, then shuts it down gracefully. */
export async function runServe(argv: string[]): Promise<void> {
  const separator = argv.indexOf('--')
  const own = separator === -1 ? argv : argv.slice(0, separator)
  const command = separator === -1 ? undefined : argv.slice(separator + 1)
  const { values } = parseArgs({
    args: own,
    options: SERVE_OPTIONS,
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
