import { revokeConsent } from '../auth-server/index.ts'
import { parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'
import { failWith } from './errors.ts'
import { existingUser } from './users.ts'

const HELP = `Usage:
  gatehouse consents revoke <username> <client_id>
                     forgets that the user approved the client: its next authorization asks again.
                     Its refresh tokens stop working at once, its access tokens are refused by the
                     gateway within seconds.

Options:
${STORE_HELP}`

export async function runConsents(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, {})
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action !== 'revoke')
    failWith('usage', `unknown action "${action}": gatehouse consents revoke <username> <client_id>`)
  const [username, clientId] = positionals(
    rest,
    ['username', 'client_id'],
    'gatehouse consents revoke <username> <client_id>',
  ) as [string, string]
  await withStore(values, async (store) => {
    const user = await existingUser(store, username)
    const revoked = await revokeConsent(store, user.id, clientId)
    console.log(
      revoked
        ? `revoked the consent of ${user.username} for ${clientId}`
        : `${user.username} had no consent or grant for ${clientId}`,
    )
  })
}
