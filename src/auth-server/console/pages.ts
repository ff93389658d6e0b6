import { listGrants } from '../grants.ts'
import { html, type SafeHtml } from '../interactions/html.ts'
import { revokeConsent } from '../interactions/index.ts'
import { type ConsoleContext, type ConsoleExchange, ConsoleRefusal, seeOther, sendPage } from './context.ts'
import { actionForm, list, PAGES, table, time } from './views.ts'

type Handler = (context: ConsoleContext, exchange: ConsoleExchange) => Promise<void>

/** What an action did, shown once on the page it returns to (`?done=`): fixed sentences, never echoed input. */
const NOTICES: Record<string, string> = {
  revoked: 'Access revoked: its refresh tokens no longer work, and the gateway refuses its access tokens.',
  rotated:
    'A new signing key is active. Every instance signs with it after its next restart; the previous key stays published.',
  disconnected:
    'Connection revoked at the provider and forgotten: the user’s tools get the connect URL again.',
  forgotten:
    'Connection forgotten, but the provider did not revoke its tokens (no revocation endpoint, or it failed: see the server log).',
  gone: 'That connection was already gone.',
}

function render(context: ConsoleContext, exchange: ConsoleExchange, path: string, content: SafeHtml) {
  const title = PAGES.find((page) => page.path === path)?.label ?? ''
  const notice = NOTICES[exchange.query.get('done') ?? '']
  sendPage(exchange.res, 200, {
    title,
    content: html`${notice ? html`<p class="notice" role="status">${notice}</p>` : ''}${content}`,
    admin: {
      username: exchange.session.user.username,
      csrf: exchange.session.csrf,
      base: context.base,
      current: path,
    },
  })
}

type ClientKind = 'static' | 'registered (DCR)' | 'metadata document (CIMD)'
interface ClientRow {
  clientId: string
  name: string | undefined
  kind: ClientKind
  redirectUris: string[]
  lastUsed: number | undefined
}

async function clientRows(context: ConsoleContext): Promise<ClientRow[]> {
  const lastUse = await context.store.clientUsage.list()
  const rows = new Map<string, ClientRow>()
  const add = (metadata: Record<string, unknown>, kind: ClientKind) => {
    const clientId = String(metadata.client_id)
    rows.set(clientId, {
      clientId,
      name: typeof metadata.client_name === 'string' ? metadata.client_name : undefined,
      kind,
      redirectUris: Array.isArray(metadata.redirect_uris) ? metadata.redirect_uris.map(String) : [],
      lastUsed: lastUse.get(clientId),
    })
  }
  for (const client of context.staticClients) add(client, 'static')
  const documentClient = (id: string) => id.startsWith('https://')
  for (const record of await context.store.listOidcRecords('Client')) {
    const id = String(record.client_id)
    if (!rows.has(id)) add(record, documentClient(id) ? 'metadata document (CIMD)' : 'registered (DCR)')
  }
  // A metadata document's client is fetched when used and may not be stored: its last use names it.
  for (const id of lastUse.keys())
    if (!rows.has(id) && documentClient(id)) add({ client_id: id }, 'metadata document (CIMD)')
  return [...rows.values()].sort((a, b) => (b.lastUsed ?? 0) - (a.lastUsed ?? 0))
}

const overview: Handler = async (context, exchange) => {
  const [clients, users, grants] = await Promise.all([
    clientRows(context),
    context.store.users.list(),
    listGrants(context.store, {}),
  ])
  const counts: Record<string, number> = {
    '/clients': clients.length,
    '/users': users.length,
    '/grants': grants.length,
  }
  if (context.vault) counts['/connections'] = (await context.store.connections.list()).length
  render(
    context,
    exchange,
    '',
    html`<ul>${PAGES.slice(1).map(
      (page) =>
        html`<li><a href="${context.base}${page.path}">${page.label}</a>${page.path in counts ? ` (${counts[page.path]})` : ''}</li>`,
    )}</ul>`,
  )
}

const clients: Handler = async (context, exchange) => {
  render(
    context,
    exchange,
    '/clients',
    table(
      'Clients, most recently used first',
      [
        ['Name', (row) => row.name ?? '—'],
        ['Client ID', (row) => html`<code>${row.clientId}</code>`],
        ['Kind', (row) => row.kind],
        ['Redirect URIs', (row) => list(row.redirectUris)],
        ['Last token', (row) => time(row.lastUsed)],
      ],
      await clientRows(context),
      'No clients yet.',
    ),
  )
}

const users: Handler = async (context, exchange) => {
  render(
    context,
    exchange,
    '/users',
    table(
      'Accounts',
      [
        ['Username', (user) => user.username],
        ['Sign-in', (user) => (user.externalId ? 'identity provider' : 'local password')],
        ['Created', (user) => time(user.createdAt)],
        [
          'Status',
          (user) =>
            user.disabledAt === undefined ? 'active' : html`disabled since ${time(user.disabledAt)}`,
        ],
        ['ID', (user) => html`<code>${user.id}</code>`],
      ],
      await context.store.users.list(),
      'No accounts yet: gatehouse users add <name>.',
    ),
  )
}

const grants: Handler = async (context, exchange) => {
  const action = `${context.base}/grants/revoke`
  render(
    context,
    exchange,
    '/grants',
    table(
      'What each user approved for each client',
      [
        ['User', (grant) => grant.username ?? grant.userId],
        ['Client ID', (grant) => html`<code>${grant.clientId}</code>`],
        ['Scopes', (grant) => list(grant.scopes)],
        ['Consented', (grant) => time(grant.consentedAt)],
        ['Live grants', (grant) => grant.grants],
        [
          'Action',
          (grant) =>
            actionForm(
              action,
              exchange.session.csrf,
              { user: grant.userId, client: grant.clientId },
              {
                text: 'Revoke',
                label: `Revoke ${grant.username ?? grant.userId}'s access for ${grant.clientId}`,
              },
            ),
        ],
      ],
      await listGrants(context.store, {}),
      'No grants or consents.',
    ),
  )
}

const keys: Handler = async (context, exchange) => {
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : Math.floor(ms / 1000))
  render(
    context,
    exchange,
    '/keys',
    html`${table(
      'Signing keys',
      [
        [
          'Key ID',
          (key) =>
            html`<code>${key.kid}</code>${key.kid === context.signingKid ? ' (this instance signs with it)' : ''}`,
        ],
        ['Algorithm', (key) => key.alg],
        ['State', (key) => key.state],
        ['Created', (key) => time(iso(key.createdAt))],
        ['Published until', (key) => time(iso(key.retireAfter))],
      ],
      await context.store.keys.list(),
      'No signing key yet.',
    )}
<h2>Rotate</h2>
<p>A new key becomes active; the previous one stays published so its tokens keep verifying. Running instances sign with the new key after their next restart.</p>
${actionForm(`${context.base}/keys/rotate`, exchange.session.csrf, {}, { text: 'Rotate the signing key', label: 'Rotate the signing key' })}`,
  )
}

const audit: Handler = async (context, exchange) => {
  const events = await context.store.audit.recent(200)
  const refusals = new Map<string, number>()
  for (const event of events) {
    const reason = event.data.reason
    if (typeof reason !== 'string') continue
    const key = `${event.type} ${reason}`
    refusals.set(key, (refusals.get(key) ?? 0) + 1)
  }
  render(
    context,
    exchange,
    '/audit',
    html`${table(
      'Refusals by reason, in the events below',
      [
        ['Refusal', ([key]) => html`<code>${key}</code>`],
        ['Count', ([, count]) => count],
      ],
      [...refusals].sort((a, b) => b[1] - a[1]),
      'No refusals among the recent events.',
    )}
${table(
  'The 200 most recent events, newest first (kept 30 days)',
  [
    ['Time', (event) => time(event.at)],
    ['Event', (event) => html`<code class="nowrap">${event.type}</code>`],
    ['Details', (event) => html`<code>${JSON.stringify(event.data)}</code>`],
  ],
  events,
  'No events yet.',
)}`,
  )
}

/** Every user's vault connections, as `gatehouse connections list`: state and metadata, never the sealed tokens. */
const connections: Handler = async (context, exchange) => {
  const vault = context.vault
  if (!vault) {
    render(
      context,
      exchange,
      '/connections',
      html`<p>The token vault is not configured: no connections (<code>authorization_server.vault.connections</code>).</p>`,
    )
    return
  }
  const names = new Map((await context.store.users.list()).map((user) => [user.id, user.username]))
  const rows = (await context.store.connections.list()).map((row) => ({
    ...row,
    username: names.get(row.userId) ?? row.userId,
    name: vault.providers.get(row.connectionId)?.options.name,
  }))
  const action = `${context.base}/connections/revoke`
  render(
    context,
    exchange,
    '/connections',
    table(
      'Third-party accounts users connected through the token vault',
      [
        ['User', (row) => row.username],
        [
          'Connection',
          (row) => html`${row.name ?? '(no longer configured)'} <code>${row.connectionId}</code>`,
        ],
        ['State', (row) => (row.status === 'active' ? 'active' : html`<span class="bad">broken</span>`)],
        ['Scopes', (row) => list(row.scope?.split(' ').filter(Boolean) ?? [])],
        ['Expires', (row) => time(row.expiresAt)],
        ['Updated', (row) => time(row.updatedAt)],
        [
          'Action',
          (row) =>
            actionForm(
              action,
              exchange.session.csrf,
              { user: row.userId, connection: row.connectionId },
              { text: 'Revoke', label: `Revoke ${row.username}'s ${row.connectionId} connection` },
            ),
        ],
      ],
      rows,
      'No connections yet: users connect their accounts at the connect URL their tools give them.',
    ),
  )
}

const health: Handler = async (context, exchange) => {
  const started = performance.now()
  const ready = await exchange.health().catch(() => false)
  const took = Math.round(performance.now() - started)
  render(
    context,
    exchange,
    '/health',
    html`<p>The upstream MCP server is ${ready ? html`<span class="ok">ready</span>` : html`<span class="bad">not ready</span>`} (the check of <code>/readyz</code>, answered in ${took} ms, asked at most once a second).</p>
<p>Checked at ${time(Math.floor(Date.now() / 1000))}. Reload the page to check again.</p>`,
  )
}

/** POST: forgets the consent and ends the grants, exactly as `gatehouse grants revoke`. */
const revokeGrant: Handler = async (context, exchange) => {
  const userId = exchange.form.get('user') ?? ''
  const clientId = exchange.form.get('client') ?? ''
  if (!userId || !clientId) throw new ConsoleRefusal('console_csrf_invalid')
  await revokeConsent(context.store, userId, clientId, exchange.session.user.id)
  seeOther(exchange.res, `${context.base}/grants?done=revoked`)
}

/** POST: the rotation of `gatehouse keys rotate`. */
const rotateKey: Handler = async (context, exchange) => {
  await context.rotateKey(exchange.session.user.id)
  seeOther(exchange.res, `${context.base}/keys?done=rotated`)
}

/** POST: revokes at the provider and forgets, the same `TokenVault.disconnect` as `gatehouse connections revoke`. */
const revokeConnection: Handler = async (context, exchange) => {
  if (!context.vault) throw new ConsoleRefusal('console_not_found')
  const userId = exchange.form.get('user') ?? ''
  const connectionId = exchange.form.get('connection') ?? ''
  if (!userId || !connectionId) throw new ConsoleRefusal('console_csrf_invalid')
  const { found, revoked } = await context.vault.disconnect(userId, connectionId, exchange.session.user.id)
  const done = !found ? 'gone' : revoked ? 'disconnected' : 'forgotten'
  seeOther(exchange.res, `${context.base}/connections?done=${done}`)
}

const signOut: Handler = async (context, exchange) => {
  await context.sessions.end(exchange.req, exchange.res)
  sendPage(exchange.res, 200, {
    title: 'Signed out',
    content: html`<p>You are signed out of the console.</p><p><a href="${context.base}">Sign in again</a></p>`,
  })
}

export const HANDLERS = {
  overview,
  clients,
  users,
  grants,
  keys,
  audit,
  health,
  connections,
  revokeGrant,
  rotateKey,
  revokeConnection,
  signOut,
}
