import { closest, operatorMessage } from './errors.ts'
import { painter } from './style.ts'

/** Every command; `gatehouse --help` lists them in this order. */
export const COMMANDS: Record<
  string,
  { summary: string; run: () => Promise<(argv: string[]) => Promise<void>> }
> = {
  serve: {
    summary: 'put an MCP server (HTTP upstream or stdio command) behind OAuth',
    run: async () => (await import('./serve.ts')).runServe,
  },
  demo: {
    summary: 'serve the MCP example server behind the embedded authorization server (npm start)',
    run: async () => (await import('./demo.ts')).runDemo,
  },
  users: {
    summary: 'accounts of the embedded authorization server: add, list, passwd, disable, enable, delete',
    run: async () => (await import('./users.ts')).runUsers,
  },
  keys: {
    summary: 'signing keys of the embedded authorization server: rotate, list',
    run: async () => (await import('./keys.ts')).runKeys,
  },
  new: {
    summary: 'create a TypeScript MCP server protected by the guard',
    run: async () => (await import('./new.ts')).runNew,
  },
  init: { summary: 'write a commented gatehouse.yaml', run: async () => (await import('./init.ts')).runInit },
  clients: {
    summary: 'clients of the embedded authorization server: list, show, revoke',
    run: async () => (await import('./clients.ts')).runClients,
  },
  grants: {
    summary: "users' consents and grants to clients: list, revoke",
    run: async () => (await import('./grants.ts')).runGrants,
  },
  consents: {
    summary: 'the same as grants (consents revoke <username> <client_id>)',
    run: async () => (await import('./grants.ts')).runGrants,
  },
  connections: {
    summary: 'third-party accounts users connected through the token vault: list, revoke, rekey',
    run: async () => (await import('./connections.ts')).runConnections,
  },
  doctor: {
    summary: "check a provider's set-up and explain a token, as the guard sees them",
    run: async () => (await import('./doctor.ts')).runDoctor,
  },
  probe: {
    summary: "walk an MCP server's authorization flow as a client, step by step",
    run: async () => (await import('./probe.ts')).runProbe,
  },
}

const USAGE = `Usage: gatehouse <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, { summary }]) => `  ${name.padEnd(9)} ${summary}`)
  .join('\n')}

Run \`gatehouse <command> --help\` (or \`gatehouse help <command>\`) for a command's options and examples.

Examples:
  gatehouse demo
  gatehouse serve --upstream http://127.0.0.1:3001/mcp
  gatehouse probe https://mcp.example.com/mcp`

async function dispatch(argv: string[]): Promise<void> {
  if (argv[0] === 'help' && argv[1] !== undefined) argv = [argv[1], '--help']
  const [name, ...rest] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    console.log(USAGE)
    return
  }
  if (name === '--version') {
    const { default: pkg } = await import('../../package.json', { with: { type: 'json' } })
    console.log(pkg.version)
    return
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
  if (!command) {
    const near = closest(name, Object.keys(COMMANDS))
    console.error(`gatehouse: unknown command "${name}"${near ? `: did you mean ${near}?` : ''}\n\n${USAGE}`)
    process.exitCode = 2
    return
  }
  await (await command.run())(rest)
}

/** Runs the command line `argv` (without `node gatehouse`); the exit status is left in `process.exitCode`. */
export async function run(argv: string[]): Promise<void> {
  try {
    await dispatch(argv)
  } catch (error) {
    const message = operatorMessage(error, argv[0])
    if (message === undefined) console.error(error)
    else console.error(`${painter(process.stderr)('fail', 'gatehouse:')} ${message}`)
    process.exitCode = 1
  }
}

// bin/gatehouse.js imports this module and calls run; `node src/cli/main.ts` runs it directly.
if (import.meta.main) await run(process.argv.slice(2))
