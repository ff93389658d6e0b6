import { revokeClient } from '../auth-server/index.ts'
import { embeddedAuthorizationConfig } from '../config/embedded.ts'
import type { OidcPayload, Store } from '../storage/store.ts'
import { type AdminSettings, parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'
import { failWith } from './errors.ts'
import { isoSeconds, JSON_HELP, JSON_OPTION, printList, printRecord } from './output.ts'

const HELP = `Usage:
  gatehouse clients list             the clients: declared in the configuration, registered (dynamic client
                                     registration) and client metadata documents fetched, with their grants
  gatehouse clients show <client_id> a client's metadata (never its secret)
  gatehouse clients revoke <client_id>
                     deletes a registered client and every grant made to it: its refresh tokens stop
                     working at once, its access tokens are refused by the gateway within seconds, every
                     user's consent to it is forgotten. A client metadata document (a URL client_id) is
                     fetched again at its next use, as a new client that users must approve again. A
                     client declared in the configuration is removed there.

Options:
${JSON_HELP}
${STORE_HELP}

Examples:
  gatehouse clients list
  gatehouse clients show https://app.example.com/oauth/client.json --json
  gatehouse clients revoke 5hKj0Zq1cT0ZxVbE --config gatehouse.yaml`

type Kind = 'static' | 'registered' | 'metadata document'

interface ClientView {
  clientId: string
  kind: Kind
  metadata: OidcPayload
  grants: number
}

/** What is never printed: the client's credentials. */
const SECRETS = new Set(['client_secret', 'registration_access_token'])

/** Every client the server knows: the configured ones first, then the stored ones, with their live grants. */
async function allClients(store: Store, settings: AdminSettings): Promise<ClientView[]> {
  const grants = new Map<string, number>()
  for (const grant of await store.listOidcRecords('Grant')) {
    const clientId = String(grant.clientId)
    grants.set(clientId, (grants.get(clientId) ?? 0) + 1)
  }
  const view = (metadata: OidcPayload, kind: Kind): ClientView => {
    const clientId = String(metadata.client_id)
    return { clientId, kind, metadata, grants: grants.get(clientId) ?? 0 }
  }
  const declared = embeddedAuthorizationConfig(settings.settings, false).clients
  const stored = await store.listOidcRecords('Client')
  return [
    ...declared.map((client) => view({ ...client }, 'static')),
    ...stored
      .map((client) =>
        view(client, /^https:/.test(String(client.client_id)) ? 'metadata document' : 'registered'),
      )
      .sort(
        (a, b) => Number(a.metadata.client_id_issued_at ?? 0) - Number(b.metadata.client_id_issued_at ?? 0),
      ),
  ]
}

/** The printable form of a client: its metadata without credentials. */
function describe(client: ClientView): Record<string, unknown> {
  const metadata = Object.fromEntries(Object.entries(client.metadata).filter(([name]) => !SECRETS.has(name)))
  return { client_id: client.clientId, kind: client.kind, grants: client.grants, ...metadata }
}

async function findClient(store: Store, settings: AdminSettings, clientId: string): Promise<ClientView> {
  const client = (await allClients(store, settings)).find((candidate) => candidate.clientId === clientId)
  return client ?? failWith('client_unknown', `no client ${clientId}: gatehouse clients list shows them`)
}

export async function runClients(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, JSON_OPTION)
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action === 'list') {
    positionals(rest, [], 'gatehouse clients list')
    await withStore(values, async (store, settings) =>
      printList(
        await allClients(store, settings),
        [
          ['CLIENT_ID', (client) => client.clientId],
          ['KIND', (client) => client.kind],
          ['NAME', (client) => String(client.metadata.client_name ?? '-')],
          ['REGISTERED', (client) => isoSeconds(optionalNumber(client.metadata.client_id_issued_at))],
          ['GRANTS', (client) => String(client.grants)],
        ],
        values.json,
        describe,
      ),
    )
    return
  }
  if (action === 'show') {
    const [clientId] = positionals(rest, ['client_id'], 'gatehouse clients show <client_id>') as [string]
    await withStore(values, async (store, settings) =>
      printRecord(describe(await findClient(store, settings, clientId)), values.json),
    )
    return
  }
  if (action === 'revoke') {
    const [clientId] = positionals(rest, ['client_id'], 'gatehouse clients revoke <client_id>') as [string]
    await withStore(values, async (store, settings) => {
      const client = await findClient(store, settings, clientId)
      if (client.kind === 'static')
        failWith(
          'client_static',
          `${clientId} is declared in the configuration: remove it from authorization_server.clients and restart gatehouse serve`,
        )
      const grants = await revokeClient(store, clientId)
      console.log(
        `revoked the client ${clientId} and its ${grants} grant(s): its refresh tokens no longer work, its access tokens are refused by the gateway within seconds`,
      )
    })
    return
  }
  failWith('usage', `unknown action "${action}": gatehouse clients list | show | revoke`)
}

const optionalNumber = (value: unknown) => (typeof value === 'number' ? value : undefined)
