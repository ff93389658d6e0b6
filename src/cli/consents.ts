import { revokeConsent } from '../auth-server/index.ts'
import { fail } from '../config/errors.ts'
import { parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'

const HELP = `Usage:
  gatehouse consents revoke <username> <client_id>
                     forgets that the user approved the client: its next authorization asks again.
                     Tokens already issued stay valid until they expire (access tokens: minutes).

Options:
${STORE_HELP}`

export async function runConsents(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, {})
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action !== 'revoke')
    fail(`unknown action "${action}": gatehouse consents revoke <username> <client_id>`)
  const [username, clientId] = positionals(
    rest,
    ['username', 'client_id'],
    'gatehouse consents revoke <username> <client_id>',
  ) as [string, string]
  await withStore(values, async (store) => {
    const user = await store.users.findByUsername(username.trim().toLowerCase())
    if (!user) return fail(`no user ${username}: gatehouse users list shows them`)
    const revoked = await revokeConsent(store, user.id, clientId)
    console.log(
      revoked
        ? `revoked the consent of ${user.username} for ${clientId}`
        : `${user.username} had no consent for ${clientId}`,
    )
  })
}
