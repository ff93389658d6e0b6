import { GuardError } from '../guard/errors.ts'

const COMMANDS: Record<string, { summary: string; run: () => Promise<(argv: string[]) => Promise<void>> }> = {
  serve: {
    summary: 'put an MCP server (HTTP upstream or stdio command) behind OAuth',
    run: async () => (await import('./serve.ts')).runServe,
  },
  demo: {
    summary: 'run an example MCP server protected by the guard, with a local OIDC provider',
    run: async () => (await import('./demo.ts')).runDemo,
  },
}

const USAGE = `Usage: gatehouse <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, { summary }]) => `  ${name.padEnd(8)} ${summary}`)
  .join('\n')}

Run \`gatehouse <command> --help\` for a command's options.`

async function main(argv: string[]): Promise<void> {
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
  const command = COMMANDS[name]
  if (!command) {
    console.error(`gatehouse: unknown command "${name}"\n\n${USAGE}`)
    process.exitCode = 2
    return
  }
  await (await command.run())(rest)
}

try {
  await main(process.argv.slice(2))
} catch (error) {
  // Configuration and discovery errors are written for the operator; anything else is a bug worth a stack.
  if (error instanceof GuardError || (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    console.error(`gatehouse: ${(error as Error).message}`)
  } else {
    console.error(error)
  }
  process.exitCode = 1
}
