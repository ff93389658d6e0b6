/** A setting of `gatehouse serve` or of the admin commands is wrong; the message names it and the fix. */
export class GatewayConfigError extends Error {
  override name = 'GatewayConfigError'
}

export const fail = (message: string): never => {
  throw new GatewayConfigError(message)
}
