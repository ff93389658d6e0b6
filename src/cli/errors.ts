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
 * guard's) and node's unknown-flag errors (usage); undefined for anything else, which is a bug worth its stack.
 */
export function operatorMessage(error: unknown): string | undefined {
  const { code, address, port } = (error ?? {}) as { code?: string; address?: string; port?: number }
  if (code === 'EADDRINUSE')
    return `port ${port} on ${address} is in use: choose another with --port (GATEHOUSE_PORT), or stop what listens there`
  const operator = isGatehouseError(error) || isGuardError(error) || code?.startsWith('ERR_PARSE_ARGS_')
  return operator ? (error as Error).message : undefined
}
