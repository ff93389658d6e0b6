import { createLocalUser } from '../auth-server/index.ts'
import { fail } from '../config/errors.ts'
import { parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'
import { readSecretInput } from './prompt.ts'

const HELP = `Usage:
  gatehouse users add <username>   create a local account; the password is read from stdin, or prompted
                                   (twice, not echoed) on a terminal
  gatehouse users list             the accounts: username, id, local or federated, creation date

Options:
${STORE_HELP}`

export async function runUsers(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, {})
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action === 'add') {
    const [username] = positionals(rest, ['username'], 'gatehouse users add <username>') as [string]
    const password = await readSecretInput('Password for the new user: ')
    await withStore(values, async (store) => {
      if (await store.users.findByUsername(username.trim().toLowerCase()))
        fail(`user ${username} already exists`)
      const user = await createLocalUser(store, username, password)
      console.log(`created the local user ${user.username} (${user.id})`)
    })
    return
  }
  if (action === 'list') {
    positionals(rest, [], 'gatehouse users list')
    await withStore(values, async (store) => {
      for (const user of await store.users.list()) {
        const kind = user.passwordHash ? 'local' : user.externalId ? 'federated' : 'no password'
        console.log(`${user.username}\t${user.id}\t${kind}\t${new Date(user.createdAt * 1000).toISOString()}`)
      }
    })
    return
  }
  fail(`unknown action "${action}": gatehouse users add <username> | gatehouse users list`)
}
