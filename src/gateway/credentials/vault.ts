import { GatewayError, RETRY_SOON_SECONDS } from '../errors.ts'
import type { CredentialMode, ModeContext } from './mode.ts'
import { UserActionRequired } from './mode.ts'

/**
 * `vault`: the upstream gets the user's own token at a third-party provider (GitHub, Google, …), from the
 * embedded authorization server's token vault, in the header its connection declares; never the client's
 * token. A user who has not connected the account (or whose connection broke) gets the connect page's URL
 * instead, and the upstream sees nothing. Needs the embedded authorization server, where users are known
 * (checked when the configuration is read).
 */
export function vaultMode(context: ModeContext): CredentialMode {
  const { vault } = context
  const { connection } = context.settings
  if (!vault || connection === undefined || !vault.providers.has(connection))
    throw new TypeError('the vault mode needs the embedded token vault and a configured connection')
  return {
    async headers(principal) {
      const userId = principal.token.subject
      // A client acting for itself has no account to connect.
      if (principal.token.actor !== 'user' || userId === undefined)
        throw new GatewayError('machine_client_refused')
      let answer: Awaited<ReturnType<typeof vault.header>>
      try {
        answer = await vault.header(userId, connection)
      } catch (error) {
        throw new GatewayError('vault_unavailable', { detail: (error as Error).message })
      }
      if (answer.ok) return { [answer.header.name]: answer.header.value }
      if (answer.reason === 'unavailable')
        throw new GatewayError('vault_unavailable', {
          detail: `${connection}: the provider did not refresh the token`,
          headers: { 'retry-after': String(answer.retryAfterSeconds ?? RETRY_SOON_SECONDS) },
        })
      const verb = answer.reason === 'broken' ? 'Reconnect' : 'Connect'
      throw new UserActionRequired(
        `${verb} your ${answer.name} account to use this tool: open ${answer.connectUrl}, then try again.`,
        answer.connectUrl,
      )
    },
    published: new Map(),
    startupWarning: undefined,
  }
}
