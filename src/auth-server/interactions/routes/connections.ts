import type { IncomingMessage } from 'node:http'
import type { TokenVault } from '../../vault/vault.ts'
import { type Exchange, PageRefusal, type PagesContext, redirect, send } from '../context.ts'
import { html } from '../html.ts'
import { readCookie } from '../security.ts'

/** Who is signed in to the authorization server in this browser; the pages of the token vault are theirs. */
export interface SignedIn {
  userId: string
  /** Keys this browser session's CSRF token. */
  csrfKey: string
}

/** The CSRF token of a vault page lives as long as this (seconds); the page is shown again to get another. */
const CSRF_TTL = 3600

/**
 * The user of this browser's session, as the authorization endpoint would see it: the provider's session
 * cookie, its session bound to this browser ({@link PagesContext.binding}), an enabled account.
 */
export async function findSignedIn(
  context: PagesContext,
  req: IncomingMessage,
): Promise<SignedIn | undefined> {
  const id = readCookie(req, context.provider.cookieName('session'))
  const session = id ? await context.provider.Session.find(id) : undefined
  const userId = session?.accountId
  if (!session || !userId || !context.binding.matches(req, userId)) return undefined
  const user = await context.store.users.findById(userId)
  if (!user || user.disabledAt !== undefined) return undefined
  return { userId, csrfKey: `vault:${session.uid}` }
}

/** {@link findSignedIn}, refused without a user. */
export async function signedIn(context: PagesContext, req: IncomingMessage): Promise<SignedIn> {
  const user = await findSignedIn(context, req)
  if (!user) throw new PageRefusal('connect_sign_in_required')
  return user
}

export function vaultOf(context: PagesContext): TokenVault {
  if (!context.vault) throw new PageRefusal('not_found')
  return context.vault
}

export async function checkPageCsrf(context: PagesContext, user: SignedIn, form: URLSearchParams) {
  if (!(await context.csrf.check(user.csrfKey, form.get('csrf')))) throw new PageRefusal('csrf_invalid')
}

/** GET of the connections page: each configured connection, its state, and a button to (dis)connect it. */
export async function connections(context: PagesContext, { req, res }: Exchange) {
  const vault = vaultOf(context)
  const user = await signedIn(context, req)
  const rows = new Map(
    (await context.store.connections.listByUser(user.userId)).map((row) => [row.connectionId, row]),
  )
  const csrf = html`<input type="hidden" name="csrf" value="${await context.csrf.issue(user.csrfKey, CSRF_TTL)}">`
  const base = context.interactionPath
  const items = [...vault.providers.values()].map(({ options }) => {
    const row = rows.get(options.id)
    const state = !row ? 'Not connected' : row.status === 'broken' ? 'Needs reconnecting' : 'Connected'
    const action = row
      ? html`<form method="post" action="${base}connections/${options.id}/disconnect">${csrf}<button type="submit">Disconnect</button></form>`
      : ''
    const connect =
      !row || row.status === 'broken'
        ? html`<a href="${base}connect/${options.id}">${row ? 'Reconnect' : 'Connect'}</a>`
        : ''
    return html`<dt>${options.name}</dt><dd data-connection="${options.id}"><span class="state">${state}</span>${row?.scope ? html` <small>(${row.scope})</small>` : ''} ${connect}${action}</dd>`
  })
  send(res, 200, 'Connected accounts', html`<p>Accounts your tools use on your behalf.</p><dl>${items}</dl>`)
}

/** POST of a connection's Disconnect: revoked at the provider, then forgotten. */
export async function disconnect(
  context: PagesContext,
  { req, res, params, form }: Exchange & { form: URLSearchParams },
) {
  const vault = vaultOf(context)
  const user = await signedIn(context, req)
  await checkPageCsrf(context, user, form)
  const connectionId = params.connection ?? ''
  if (!vault.providers.has(connectionId)) throw new PageRefusal('not_found')
  await vault.disconnect(user.userId, connectionId)
  redirect(res, `${context.interactionPath}connections`)
}
