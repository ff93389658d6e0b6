/** A setting of `gatehouse serve` or of the admin commands is wrong; the message names it and the fix. */
export class GatewayConfigError extends Error {
  override name = 'GatewayConfigError'
}

export const fail = (message: string): never => {
  throw new GatewayConfigError(message)
}

/**
 * Refuses keys of a configuration block that are not in `known` (a misspelled key would otherwise be ignored
 * and its default silently used), naming them and the known ones. `failWith` raises the caller's error type.
 */
export function only(
  block: Record<string, unknown>,
  known: readonly string[],
  where: string,
  failWith: (message: string) => never = fail,
): void {
  const unknown = Object.keys(block).filter((key) => !known.includes(key))
  if (unknown.length > 0)
    failWith(`${where}: unknown setting ${unknown.join(', ')}; known: ${known.join(', ')}`)
}
