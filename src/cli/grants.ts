import { listGrants, revokeConsent } from '../auth-server/index.ts'
import { parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'
import { failWith } from './errors.ts'
import { isoSeconds, JSON_HELP, JSON_OPTION, printList } from './output.ts'
import { existingUser } from './users.ts'

const HELP = `Usage:
  gatehouse grants list [--user <username>] [--client <client_id>]
                     what each user approved for each client: the scopes consented to, when, and how many
                     live grants (refresh tokens) there are
  gatehouse grants revoke <username> <client_id>
                     forgets that the user approved the client: its next authorization asks again.
                     Its refresh tokens stop working at once, its access tokens are refused by the
                     gateway within seconds. (gatehouse consents revoke is the same.)

Options:
  --user <username>  list only this user's grants
  --client <id>      list only the grants to this client
${JSON_HELP}
${STORE_HELP}

Examples:
  gatehouse grants list --user alice
  gatehouse grants revoke alice 5hKj0Zq1cT0ZxVbE
  gatehouse consents revoke alice 5hKj0Zq1cT0ZxVbE --data-dir /var/lib/gatehouse`

export async function runGrants(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, {
    ...JSON_OPTION,
    user: { type: 'string' },
    client: { type: 'string' },
  })
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action === 'list') {
    positionals(rest, [], 'gatehouse grants list [--user <username>] [--client <client_id>]')
    await withStore(values, async (store) => {
      const userId = values.user === undefined ? undefined : (await existingUser(store, values.user)).id
      printList(
        await listGrants(store, {
          ...(userId && { userId }),
          ...(values.client && { clientId: values.client }),
        }),
        [
          ['USER', (entry) => entry.username ?? entry.userId],
          ['CLIENT_ID', (entry) => entry.clientId],
          ['SCOPES', (entry) => entry.scopes.join(' ') || '-'],
          ['CONSENTED', (entry) => isoSeconds(entry.consentedAt)],
          ['GRANTS', (entry) => String(entry.grants)],
        ],
        values.json,
        (entry) => ({
          user: entry.username ?? null,
          user_id: entry.userId,
          client_id: entry.clientId,
          scopes: entry.scopes,
          consented_at: entry.consentedAt === undefined ? null : isoSeconds(entry.consentedAt),
          grants: entry.grants,
        }),
      )
    })
    return
  }
  if (action !== 'revoke')
    failWith('usage', `unknown action "${action}": gatehouse grants list | revoke <username> <client_id>`)
  const [username, clientId] = positionals(
    rest,
    ['username', 'client_id'],
    'gatehouse grants revoke <username> <client_id>',
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
