import { GatewayConfigError } from '../config/errors.ts'
import { isGuardError } from '../guard/index.ts'

/**
 * The one-line message for errors written for the operator (settings, discovery, option validation, unknown
 * flags); undefined for anything else, which is a bug worth its stack.
 */
export function operatorMessage(error: unknown): string | undefined {
  const operator =
    error instanceof GatewayConfigError ||
    isGuardError(error) ||
    error instanceof TypeError ||
    (error as { code?: string })?.code?.startsWith('ERR_PARSE_ARGS_')
  return operator ? (error as Error).message : undefined
}
