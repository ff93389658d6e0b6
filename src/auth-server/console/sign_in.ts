import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ClientMetadata } from 'oidc-provider'
import { recordAudit } from '../audit.ts'
import { type InternalClient, internalClientMetadata } from '../internal_sign_in.ts'
import type { ConsoleContext } from './context.ts'
import { ConsoleRefusal } from './context.ts'

/** The console signs in as an OAuth client of its own authorization server (see `internal_sign_in.ts`). */
export const CONSOLE_CLIENT_ID = 'gatehouse-console'

export const consolePath = (issuer: string) => `${new URL(issuer).pathname.replace(/\/$/, '')}/admin`

export const consoleSignInClient = (issuer: string): InternalClient => ({
  clientId: CONSOLE_CLIENT_ID,
  clientName: 'Gatehouse console',
  callbackUri: `${issuer}/admin/callback`,
})

/** The provider's registration of the console (added to the static clients when admins are configured). */
export const consoleClient = (issuer: string): ClientMetadata =>
  internalClientMetadata(consoleSignInClient(issuer))

/**
 * The way back from `/authorize` (started with `prompt=login`: an administrator signs in afresh): the sign-in
 * checked by {@link InternalSignIn.finish}, then the account must be an administrator.
 */
export async function finishSignIn(context: ConsoleContext, req: IncomingMessage, res: ServerResponse) {
  const signedIn = await context.signIn.finish(req, res)
  if (!signedIn) throw new ConsoleRefusal('console_sign_in_failed')
  const user = await context.store.users.findById(signedIn.accountId)
  if (!context.sessions.isAdmin(user)) {
    await recordAudit(context.store, 'admin.refused', { userId: signedIn.accountId })
    throw new ConsoleRefusal('console_not_admin')
  }
  await recordAudit(context.store, 'admin.signed_in', { userId: user.id })
  await context.sessions.start(res, user)
  return signedIn.returnTo
}
