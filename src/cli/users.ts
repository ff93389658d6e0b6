import {
  AuthServerError,
  createLocalUser,
  deleteUser,
  disableUser,
  enableUser,
  setUserPassword,
} from '../auth-server/index.ts'
import type { Store, User } from '../storage/store.ts'
import { parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'
import { failWith } from './errors.ts'
import { isoSeconds, JSON_HELP, JSON_OPTION, printList } from './output.ts'
import { readSecretInput } from './prompt.ts'

const HELP = `Usage:
  gatehouse users add <username>      create a local account; the password is read from stdin, or prompted
                                      (twice, not echoed) on a terminal
  gatehouse users list                the accounts: username, id, local or federated, created, disabled
  gatehouse users passwd <username>   set a local password (read like add); ends the account's sessions and
                                      tokens
  gatehouse users disable <username>  the account can no longer sign in; its sessions, refresh tokens and
                                      access tokens end (refused by the gateway within seconds)
  gatehouse users enable <username>   lets a disabled account sign in again
  gatehouse users delete <username>   deletes the account and its consents; its tokens end as with disable

Options:
${JSON_HELP}
${STORE_HELP}

Examples:
  gatehouse users add alice                     # asks for the password twice, not echoed
  printf '%s\\n' "$PASSWORD" | gatehouse users add ci-bot --config gatehouse.yaml
  gatehouse users list --json
  gatehouse users disable alice`

const ACTIONS = 'add | list | passwd | disable | enable | delete'

/** The actions on one existing account: what they do, and what they print. */
const ON_USER: Record<string, (store: Store, user: User) => Promise<string>> = {
  disable: async (store, user) => {
    await disableUser(store, user)
    return `disabled ${user.username}: its sessions and tokens are revoked`
  },
  enable: async (store, user) => {
    await enableUser(store, user)
    return `enabled ${user.username}`
  },
  delete: async (store, user) => {
    await deleteUser(store, user)
    return `deleted ${user.username} with its consents: its sessions and tokens are revoked`
  },
}

export async function runUsers(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, JSON_OPTION)
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action === 'add') {
    const [username] = positionals(rest, ['username'], 'gatehouse users add <username>') as [string]
    const password = await readSecretInput('Password for the new user: ')
    await withStore(values, async (store) => {
      if (await store.users.findByUsername(username))
        throw new AuthServerError('user_exists', `user ${username} already exists`)
      const user = await createLocalUser(store, username, password)
      console.log(`created the local user ${user.username} (${user.id})`)
    })
    return
  }
  if (action === 'list') {
    positionals(rest, [], 'gatehouse users list')
    await withStore(values, async (store) =>
      printList(
        await store.users.list(),
        [
          ['USERNAME', (user) => user.username],
          ['ID', (user) => user.id],
          ['KIND', kind],
          ['CREATED', (user) => isoSeconds(user.createdAt)],
          ['DISABLED', (user) => (user.disabledAt === undefined ? '' : isoSeconds(user.disabledAt))],
        ],
        values.json,
        (user) => ({
          username: user.username,
          id: user.id,
          kind: kind(user),
          created_at: isoSeconds(user.createdAt),
          disabled_at: user.disabledAt === undefined ? null : isoSeconds(user.disabledAt),
        }),
      ),
    )
    return
  }
  if (action === 'passwd') {
    const [username] = positionals(rest, ['username'], 'gatehouse users passwd <username>') as [string]
    // Asked for before the store opens, like add; a wrong name is reported after.
    const password = await readSecretInput(`New password for ${username}: `)
    await withStore(values, async (store) => {
      const user = await existingUser(store, username)
      await setUserPassword(store, user, password)
      console.log(`set the password of ${user.username}: its sessions and tokens are revoked`)
    })
    return
  }
  const onUser = ON_USER[action]
  if (!onUser) return failWith('usage', `unknown action "${action}": gatehouse users ${ACTIONS}`)
  const [username] = positionals(rest, ['username'], `gatehouse users ${action} <username>`) as [string]
  await withStore(values, async (store) =>
    console.log(await onUser(store, await existingUser(store, username))),
  )
}

/**
 * The account named `username` (compared as the store normalizes names), or with that id (the way to name
 * one of two older accounts whose names differ only in case), or an error naming it and `users list`.
 */
export async function existingUser(store: Store, username: string): Promise<User> {
  const user =
    (await store.users.findByUsername(username)) ??
    (UUID.test(username) ? await store.users.findById(username) : undefined)
  return user ?? failWith('user_unknown', `no user ${username}: gatehouse users list shows them`)
}

const kind = (user: User) => (user.passwordHash ? 'local' : user.externalId ? 'federated' : 'no password')

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
