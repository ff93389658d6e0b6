import { clientAddress } from '../../../guard/lib/http.ts'
import { recordAudit } from '../../audit.ts'
import { type Interaction, PageRefusal, type PagesContext } from '../context.ts'
import { loginPage } from '../pages.ts'
import { decoy, MAX_PASSWORD_LENGTH, normalizeUsername, verifyPassword } from '../passwords.ts'

/** POST of the username and password form. */
export async function localLogin(context: PagesContext, { req, res, details, form }: Interaction) {
  const { store, perAddress, signInBackoff, provider } = context
  if (!context.localAccounts) throw new PageRefusal('not_found')
  // One character past the longest valid username: still matches nobody, and keeps buckets and audit small.
  const username = normalizeUsername(form.get('username') ?? '').slice(0, 65)
  const password = form.get('password') ?? ''
  const address = clientAddress(req, context.trustProxy)
  // Wrong passwords slow down guessing one account from one address; every attempt counts against the
  // address, so spraying many accounts is slowed down too. Neither locks the user out elsewhere.
  const withinAddress = await store.hit(`login:addr:${address}`, perAddress.limit, perAddress.windowSeconds)
  const admission = withinAddress
    ? await signInBackoff.admit(username, address)
    : { retryAfter: perAddress.windowSeconds }
  if ('retryAfter' in admission) {
    await recordAudit(store, 'login.rate_limited', { username, address })
    throw new PageRefusal('rate_limited', undefined, admission.retryAfter)
  }
  const user =
    username && password.length <= MAX_PASSWORD_LENGTH
      ? await store.users.findByUsername(username)
      : undefined
  const valid = await verifyPassword(password, user?.passwordHash ?? (await decoy()))
  const succeeded = user?.passwordHash !== undefined && valid
  await signInBackoff.settle(admission.ticket, succeeded)
  if (!user || !succeeded) {
    await recordAudit(store, 'login.failed', { username, address })
    return loginPage(context, res, details, 401, 'Wrong username or password.')
  }
  await recordAudit(store, 'login.succeeded', { userId: user.id, method: 'local' })
  context.binding.set(res, user.id)
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: user.id } },
    { mergeWithLastSubmission: false },
  )
}
