import { type AuthServerLogger, INTERACTION_PREFIX, TokenVault } from '../auth-server/index.ts'
import { vaultSettings } from '../config/embedded.ts'
import type { Store, VaultConnection } from '../storage/store.ts'
import { type AdminSettings, parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'
import { loadVaultKeys } from './embedded_server.ts'
import { failWith } from './errors.ts'
import { isoSeconds, JSON_HELP, JSON_OPTION, printList } from './output.ts'
import { existingUser } from './users.ts'

const HELP = `Usage:
  gatehouse connections list [--user <username>] [--connection <id>]
                     the third-party accounts users connected through the token vault: their state
                     (active, or broken: the provider refused the refresh token), scopes, expiry and key
  gatehouse connections revoke <username> <connection>
                     revokes the user's tokens at the provider, then forgets them; the user's tools get
                     the connect URL again
  gatehouse connections rekey
                     re-seals every row not sealed with the newest vault key; run it after adding a key,
                     before removing the old one

Options:
  --user <username>  list only this user's connections
  --connection <id>  list only this connection's users
${JSON_HELP}
${STORE_HELP}
  GATEHOUSE_VAULT_KEYS (or authorization_server.vault.keys_file) applies as for gatehouse serve.

Examples:
  gatehouse connections list --user alice
  gatehouse connections list --connection github --json
  gatehouse connections revoke alice github
  GATEHOUSE_VAULT_KEYS=k2:<new>,k1:<old> gatehouse connections rekey --config gatehouse.yaml`

/** The commands' logger: the vault's warnings (a provider that refused the revocation) go to stderr. */
const STDERR: AuthServerLogger = {
  warn: (message, fields) => console.error(`warning: ${message}`, fields ? JSON.stringify(fields) : ''),
  info: () => {},
}

/** The token vault `gatehouse serve` runs, for the commands that revoke or re-seal: its connections and keys. */
async function openVault(store: Store, { settings }: AdminSettings): Promise<TokenVault> {
  const vault =
    vaultSettings(settings.authorization_server.vault) ??
    failWith(
      'vault_not_configured',
      'authorization_server.vault.connections is empty: pass the configuration gatehouse serve uses (--config)',
    )
  // Only the revocation and sealing are used: the connect URLs need no real origin.
  return new TokenVault(
    store,
    STDERR,
    { issuer: settings.public_url ?? 'http://localhost', interactionPath: INTERACTION_PREFIX },
    { connections: vault.connections, keys: await loadVaultKeys(vault, STDERR) },
  )
}

export async function runConnections(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, {
    ...JSON_OPTION,
    user: { type: 'string' },
    connection: { type: 'string' },
  })
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action === 'list') {
    positionals(rest, [], 'gatehouse connections list [--user <username>] [--connection <id>]')
    await withStore(values, async (store) => {
      const user = values.user === undefined ? undefined : await existingUser(store, values.user)
      const rows = (
        user ? await store.connections.listByUser(user.id) : await store.connections.list()
      ).filter((row) => values.connection === undefined || row.connectionId === values.connection)
      const names = new Map((await store.users.list()).map((entry) => [entry.id, entry.username]))
      const username = (row: VaultConnection) => names.get(row.userId) ?? row.userId
      printList(
        rows,
        [
          ['USER', username],
          ['CONNECTION', (row) => row.connectionId],
          ['STATUS', (row) => row.status],
          ['SCOPE', (row) => row.scope ?? '-'],
          ['EXPIRES', (row) => isoSeconds(row.expiresAt)],
          ['KEY', (row) => row.keyId],
          ['UPDATED', (row) => isoSeconds(row.updatedAt)],
        ],
        values.json,
        (row) => ({
          user: names.get(row.userId) ?? null,
          user_id: row.userId,
          connection: row.connectionId,
          status: row.status,
          scope: row.scope ?? null,
          expires_at: row.expiresAt === undefined ? null : isoSeconds(row.expiresAt),
          key_id: row.keyId,
          connected_at: isoSeconds(row.createdAt),
          updated_at: isoSeconds(row.updatedAt),
        }),
      )
    })
    return
  }
  if (action === 'rekey') {
    positionals(rest, [], 'gatehouse connections rekey')
    await withStore(values, async (store, settings) => {
      const { resealed, skipped } = await (await openVault(store, settings)).rekey()
      console.log(
        `re-sealed ${resealed} connection(s) with the newest key` +
          (skipped ? `; ${skipped} changed meanwhile (refreshed): run rekey again` : ''),
      )
    })
    return
  }
  if (action !== 'revoke')
    failWith(
      'usage',
      `unknown action "${action}": gatehouse connections list | revoke <username> <connection> | rekey`,
    )
  const [name, connectionId] = positionals(
    rest,
    ['username', 'connection'],
    'gatehouse connections revoke <username> <connection>',
  ) as [string, string]
  await withStore(values, async (store, settings) => {
    const user = await existingUser(store, name)
    const vault = await openVault(store, settings)
    const { found, revoked } = await vault.disconnect(user.id, connectionId)
    if (!found) failWith('connection_unknown', `${user.username} has no ${connectionId} connection`)
    console.log(
      revoked
        ? `revoked ${user.username}'s ${connectionId} tokens at the provider and forgot them`
        : `forgot ${user.username}'s ${connectionId} tokens; the provider did not revoke them (no revocation endpoint, or it failed: see the warning)`,
    )
  })
}
