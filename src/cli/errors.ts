import { defineErrors, GatehouseError, isGatehouseError } from '../errors/index.ts'
import { isGuardError } from '../guard/index.ts'

/**
 * The admin commands' own failures (settings are the config part's). Never on the wire: the status says what
 * an HTTP answer would be; the `detail` is the line the operator reads.
 */
export const CLI_ERRORS = defineErrors('cli', {
  usage: { status: 400, description: 'the command line is wrong' },
  user_unknown: { status: 404, description: 'there is no user with this username' },
  client_unknown: { status: 404, description: 'there is no client with this client_id' },
  client_static: { status: 409, description: 'the client is declared in the configuration, not registered' },
  input_mismatch: { status: 400, description: 'the two passwords typed differ' },
  input_cancelled: { status: 400, description: 'the input was cancelled' },
  store_unavailable: { status: 503, description: 'the store cannot be opened' },
  redis_unreachable: { status: 503, description: 'the Redis of shared_state cannot be reached' },
  secret_missing: { status: 500, description: 'the secret of the authorization server is not available' },
  secret_unreadable: { status: 500, description: 'the secret file cannot be read' },
  vault_keys_unreadable: { status: 500, description: 'the token vault key file cannot be read' },
  vault_not_configured: { status: 400, description: 'no token vault connection is configured' },
  connection_unknown: { status: 404, description: 'the user has no such vault connection' },
  key_rotation_failed: { status: 500, description: 'the signing key cannot be rotated' },
  demo_server_missing: { status: 500, description: 'the MCP example server of the demo is not installed' },
  probe_failed: { status: 502, description: 'a step of the MCP authorization flow failed' },
  directory_not_empty: { status: 409, description: 'the directory for the new project is not empty' },
  file_exists: { status: 409, description: 'the file to write exists already' },
  install_failed: { status: 500, description: 'npm install failed in the new project' },
})

export type CliErrorCode = keyof typeof CLI_ERRORS.registry

export class CliError extends GatehouseError<typeof CLI_ERRORS.registry> {
  override name = 'CliError'

  constructor(code: CliErrorCode, detail: string, options?: ErrorOptions) {
    super(CLI_ERRORS, code, detail, options)
  }
}

/** Throws a {@link CliError}; an expression, for `value ?? failWith(…)`. */
export const failWith = (code: CliErrorCode, detail: string, options?: ErrorOptions): never => {
  throw new CliError(code, detail, options)
}

/**
 * The one-line message for errors written for the operator: every registry error (Gatehouse's and the
 * guard's) and node's command-line errors (usage, with where to read it); undefined for anything else, which
 * is a bug worth its stack. `command` is the command that was run, for that pointer.
 */
export function operatorMessage(error: unknown, command?: string): string | undefined {
  const { code, address, port } = (error ?? {}) as { code?: string; address?: string; port?: number }
  if (code === 'EADDRINUSE')
    return `port ${port} on ${address} is in use: choose another with --port (GATEHOUSE_PORT), or stop what listens there`
  if (code?.startsWith('ERR_PARSE_ARGS_')) return usageMessage(error as Error, command)
  return isGatehouseError(error) || isGuardError(error) ? (error as Error).message : undefined
}

/** node:util parseArgs's messages, shortened, with the help that lists what is accepted. */
function usageMessage(error: Error, command: string | undefined): string {
  const help = command ? `gatehouse ${command} --help` : 'gatehouse --help'
  const unknown = /^Unknown option '([^']+)'/.exec(error.message)?.[1]
  if (unknown) return `unknown option ${unknown}: ${help} lists the options`
  const positional = /^Unexpected argument '([^']*)'/.exec(error.message)?.[1]
  if (positional !== undefined)
    return `unexpected argument ${JSON.stringify(positional)}: ${help} shows the usage`
  return `${error.message.replace(/\.$/, '')}: ${help} shows the usage`
}

/** The candidate nearest to a mistyped `word` (at most two edits, or a prefix of it), if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined
  for (const candidate of candidates) {
    const distance = candidate.startsWith(word) && word.length >= 2 ? 1 : editDistance(word, candidate)
    if (distance <= 2 && (!best || distance < best.distance)) best = { candidate, distance }
  }
  return best?.candidate
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      )
    previous = current
  }
  return previous[b.length] as number
}
