import { GatewayConfigError } from '../config/errors.ts'
import { isGuardError } from '../guard/index.ts'

/**
 * The one-line message for errors written for the operator (settings, discovery, option validation, unknown
 * flags); undefined for anything else, which is a bug worth its stack.
 */
export function operatorMessage(error: unknown): string | undefined {
  const { code, address, port } = (error ?? {}) as { code?: string; address?: string; port?: number }
  if (code === 'EADDRINUSE')
    return `port ${port} on ${address} is in use: choose another with --port (GATEHOUSE_PORT), or stop what listens there`
  const operator =
    error instanceof GatewayConfigError ||
    isGuardError(error) ||
    error instanceof TypeError ||
    code?.startsWith('ERR_PARSE_ARGS_')
  return operator ? (error as Error).message : undefined
}
