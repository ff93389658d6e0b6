import { defineErrors, GatehouseError } from '../errors/index.ts'

/**
 * Settings of `gatehouse serve` and of the admin commands. Raised at start, never on the wire: the `detail`
 * names the setting, the value and the fix, and is the message the operator reads.
 */
export const CONFIG_ERRORS = defineErrors('config', {
  setting_invalid: { status: 500, description: 'a setting is missing or wrong' },
  setting_unknown: { status: 500, description: 'a configuration block has a key Gatehouse does not know' },
})

export type ConfigErrorCode = keyof typeof CONFIG_ERRORS.registry

/**
 * A setting of `gatehouse serve` or of the admin commands is wrong; the message names it and the fix. The
 * message comes first (unlike other registry errors) because callers wrote `new GatewayConfigError(message)`.
 */
export class GatewayConfigError extends GatehouseError<typeof CONFIG_ERRORS.registry> {
  override name = 'GatewayConfigError'

  constructor(message: string, code: ConfigErrorCode = 'setting_invalid', options?: ErrorOptions) {
    super(CONFIG_ERRORS, code, message, options)
  }
}

export const fail = (message: string): never => {
  throw new GatewayConfigError(message)
}

const failUnknown = (message: string): never => {
  throw new GatewayConfigError(message, 'setting_unknown')
}

/**
 * Refuses keys of a configuration block that are not in `known` (a misspelled key would otherwise be ignored
 * and its default silently used), naming them and the known ones. `failWith` raises the caller's error type.
 */
export function only(
  block: Record<string, unknown>,
  known: readonly string[],
  where: string,
  failWith: (message: string) => never = failUnknown,
): void {
  const unknown = Object.keys(block).filter((key) => !known.includes(key))
  if (unknown.length > 0)
    failWith(`${where}: unknown setting ${unknown.join(', ')}; known: ${known.join(', ')}`)
}
