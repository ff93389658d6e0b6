import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { createLocalUser } from '../auth-server/index.ts'
import { DEFAULT_DATA_DIR } from '../config/schema.ts'
import { loadGatewayConfig } from '../gateway/config.ts'
import { createGatewayLogger } from '../gateway/logger.ts'
import type { Store } from '../storage/store.ts'
import { startServe } from './embedded_server.ts'
import { failWith } from './errors.ts'
import { untilStopped } from './serve.ts'
import { step } from './style.ts'

const HELP = `Usage: gatehouse demo [--port 8000] [--data-dir ${DEFAULT_DATA_DIR}]

Runs gatehouse serve with its embedded authorization server (local accounts, SQLite in the data directory)
in front of the MCP "everything" example server over stdio, on 127.0.0.1 (the package
@modelcontextprotocol/server-everything, installed next to mcp-gatehouse). On first start it creates the
local user "demo" and prints its password once.

Options:
  --port <port>       default 8000 (PORT)
  --data-dir <dir>    where the demo keeps its accounts, clients and keys
  -h, --help          this help

Examples:
  gatehouse demo
  gatehouse demo --port 8100 --data-dir /tmp/gatehouse-demo
  npx -p mcp-gatehouse -p @modelcontextprotocol/server-everything gatehouse demo`

const EVERYTHING = '@modelcontextprotocol/server-everything'
const DEMO_USER = 'demo'

export async function runDemo(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', default: process.env.PORT ?? '8000' },
      'data-dir': { type: 'string', default: DEFAULT_DATA_DIR },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    console.log(HELP)
    return
  }
  // The demo's own settings only: an OAUTH_ISSUER_URL in the shell must not turn the embedded server off.
  const config = await loadGatewayConfig(
    {
      port: values.port,
      address: '127.0.0.1',
      dataDir: values['data-dir'],
      logLevel: 'warn',
      command: [process.execPath, everythingBin()],
    },
    {},
  )
  step('starting the gateway, its authorization server and the example server')
  const gateway = await startServe(config, createGatewayLogger(config.logLevel))
  const store = gateway.authorizationServer?.store as Store
  console.log(`
Gatehouse demo: the MCP "everything" server behind OAuth
  MCP URL:  ${gateway.resource}
  Issuer:   ${gateway.authorizationServer?.auth.issuer}   (data in ${values['data-dir']})

${await demoUser(store, values['data-dir'])}

Add the MCP URL in a client; it opens the sign-in page in your browser:
  Claude Code:  claude mcp add --transport http gatehouse-demo ${gateway.resource}
  VS Code:      MCP: Add Server… > HTTP > ${gateway.resource}
  Inspector:    npx @modelcontextprotocol/inspector   then Streamable HTTP, ${gateway.resource},
                Open Auth Settings > Quick OAuth Flow

Without a token the endpoint answers 401 with the way to the authorization server:
  curl -si -X POST ${gateway.resource}

Press Ctrl+C to stop.`)
  await untilStopped(gateway)
}

/**
 * The example server's script, found the way Node finds packages from here: in a clone (a development
 * dependency) or next to an installed mcp-gatehouse. The package does not depend on it, so it may be absent.
 */
function everythingBin(): string {
  let manifest: string
  try {
    manifest = createRequire(import.meta.url).resolve(`${EVERYTHING}/package.json`)
  } catch {
    return failWith(
      'demo_server_missing',
      `gatehouse demo serves the MCP example server ${EVERYTHING}, which is not installed: install it next to mcp-gatehouse (npm install ${EVERYTHING}), or run npx -p mcp-gatehouse -p ${EVERYTHING} gatehouse demo`,
    )
  }
  const { bin } = JSON.parse(readFileSync(manifest, 'utf8')) as { bin: Record<string, string> }
  return join(dirname(manifest), bin['mcp-server-everything'] as string)
}

/** Creates the demo user on first start; its password is shown once and stored only as a hash. */
async function demoUser(store: Store, dataDir: string): Promise<string> {
  if (await store.users.findByUsername(DEMO_USER)) {
    return `Sign in as "${DEMO_USER}" with the password printed on the first start.
  Lost it? Add another user: npx mcp-gatehouse users add <name> --data-dir ${dataDir}
  or start over by deleting ${dataDir} (users, consents and keys are forgotten).`
  }
  const password = randomBytes(12).toString('base64url')
  await createLocalUser(store, DEMO_USER, password, { name: 'Demo User' })
  return `Sign in as "${DEMO_USER}" with the password ${password}
  (shown this once; it is stored hashed in ${dataDir})`
}
