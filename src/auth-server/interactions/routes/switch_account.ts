import { recordAudit } from '../../audit.ts'
import { ROUTES } from '../../mount.ts'
import { type Details, type Interaction, type PagesContext, redirect } from '../context.ts'

/**
 * POST of the chooser's "Use another account": ends this browser's session and starts the same authorization
 * again: the binding cleared, the start drops the session cookie too, and the user signs in afresh (no account
 * switch inside the interaction).
 */
export async function switchAccount(context: PagesContext, { res, details }: Interaction) {
  const session = details.session as NonNullable<Details['session']>
  const existing = session.cookie ? await context.provider.Session.find(session.cookie) : undefined
  await existing?.destroy()
  await recordAudit(context.store, 'login.switch_account', { userId: session.accountId })
  context.binding.clear(res)
  redirect(res, restartUrl(context.issuer, details.params))
}

function restartUrl(issuer: string, params: Details['params']): string {
  const url = new URL(`${issuer.replace(/\/$/, '')}${ROUTES.authorization}`)
  for (const [key, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null) url.searchParams.append(key, String(item))
    }
  }
  return url.href
}
