import { interactionPolicy } from 'oidc-provider'
import type { Store, User } from '../storage/store.ts'
import { recordAudit } from './audit.ts'
import { checkNewPassword, hashPassword } from './interactions/passwords.ts'

/**
 * How long a revocation is listed: the longest access-token lifetime the guard accepts by default (24 h)
 * plus clock skew, so every token issued before it has expired by then, whatever `ttl.access_token` the
 * server that issued it had. The admin commands run without that configuration.
 */
export const REVOCATION_KEEP_SECONDS = 86_400 + 60

/**
 * Ends what `userId` granted `clientId` (every client when undefined): its grants, refresh tokens and codes
 * are deleted (without a client, the browser sessions too), and its access tokens, which cannot be
 * recalled, are listed as revoked for the gateway's guard. Returns how many grants there were.
 */
export async function revokeGrants(store: Store, userId: string, clientId?: string): Promise<number> {
  const grants = await store.revokeAccountGrants(userId, clientId)
  // Listed after the deletion: a refresh racing it issues a token in the same second at the latest.
  await store.revocations.add(userId, clientId, REVOCATION_KEEP_SECONDS)
  return grants
}

/**
 * Ends a registered client: its record is deleted, with every grant, refresh token and code made to it and
 * every user's consent to it; its access tokens are listed as revoked for the gateway's guard. Returns how
 * many grants there were.
 */
export async function revokeClient(store: Store, clientId: string): Promise<number> {
  const grants = await store.revokeClient(clientId)
  const consents = await store.consents.revokeClient(clientId)
  await store.revocations.addClient(clientId, REVOCATION_KEEP_SECONDS)
  await recordAudit(store, 'client.revoked', { clientId, grants, consents })
  return grants
}

/** The login prompt's reason when a browser session exists but has not been used for this client yet. */
export const ACCOUNT_UNCONFIRMED = 'account_unconfirmed'

/**
 * `oidc-provider`'s prompts, with two more reasons to sign in. The browser session's account is gone
 * (`findAccount` gives nothing for a disabled or deleted user): without it, that session fails with a
 * server error instead of showing the sign-in page. And the session has not authorized this client yet:
 * the user confirms the account ("Continue as alice?") rather than a session completing it unseen, since a
 * session may have been planted in this browser (login CSRF).
 */
export function accountAwarePolicy(): interactionPolicy.Prompt[] {
  const policy = interactionPolicy.base()
  policy
    .get('login')
    ?.checks.add(
      new interactionPolicy.Check(
        'account_unavailable',
        'the account of the session is disabled or deleted',
        'login_required',
        (ctx) => ctx.oidc.session?.accountId !== undefined && ctx.oidc.account === undefined,
      ),
    )
  policy.get('login')?.checks.add(
    new interactionPolicy.Check(
      ACCOUNT_UNCONFIRMED,
      'the account of the session has not been confirmed for this client in this browser',
      'account_selection_required',
      (ctx) => {
        const { session, client, result } = ctx.oidc
        // Reading `authorizations` directly: `session.grantIdFor` would create an empty entry.
        const used = client && session?.authorizations?.[client.clientId]?.grantId !== undefined
        return session?.accountId !== undefined && result?.login === undefined && !used
      },
    ),
  )
  return policy
}

/** Disables an account: it can no longer sign in, and every token it holds stops working. */
export async function disableUser(store: Store, user: User): Promise<void> {
  await store.users.setDisabled(user.id, true)
  const grants = await revokeGrants(store, user.id)
  await recordAudit(store, 'user.disabled', { userId: user.id, grants })
}

/** Lets a disabled account sign in again; tokens revoked while it was disabled stay revoked. */
export async function enableUser(store: Store, user: User): Promise<void> {
  await store.users.setDisabled(user.id, false)
  await recordAudit(store, 'user.enabled', { userId: user.id })
}

/** Deletes an account with its consents, and ends every token it holds. */
export async function deleteUser(store: Store, user: User): Promise<void> {
  await store.users.delete(user.id)
  const grants = await revokeGrants(store, user.id)
  await recordAudit(store, 'user.deleted', { userId: user.id, username: user.username, grants })
}

/**
 * Sets a local password. Every session and token of the account ends with the old password: an
 * administrator sets one when it was forgotten or stolen.
 */
export async function setUserPassword(store: Store, user: User, password: string): Promise<void> {
  checkNewPassword(password)
  await store.users.setPassword(user.id, await hashPassword(password))
  const grants = await revokeGrants(store, user.id)
  await recordAudit(store, 'user.password_set', { userId: user.id, grants })
}
