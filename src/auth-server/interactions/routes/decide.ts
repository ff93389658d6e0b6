import { recordAudit } from '../../audit.ts'
import { finishConsent, mergeAccess, requestedAccess, splitAccess } from '../consent.ts'
import { type Details, type Interaction, now, type PagesContext } from '../context.ts'

/** POST of the consent form: approve (remembered, then the grant) or deny (`access_denied` to the client). */
export async function decide(context: PagesContext, { req, res, details, form }: Interaction) {
  const { provider, store, issuer } = context
  const userId = (details.session as NonNullable<Details['session']>).accountId
  const clientId = details.params.client_id as string
  if (form.get('decision') !== 'approve') {
    await recordAudit(store, 'consent.denied', { userId, clientId })
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the user denied the authorization request' },
      { mergeWithLastSubmission: false },
    )
    return
  }
  const holds = await context.userScopes.held(userId)
  const { granted, refused } = splitAccess(await requestedAccess(provider, details, issuer), holds)
  const previous = await store.consents.find(userId, clientId)
  await store.consents.save({
    userId,
    clientId,
    resources: mergeAccess(previous?.resources, granted),
    grantedAt: now(),
  })
  await recordAudit(store, 'consent.granted', { userId, clientId, resources: granted, notHeld: refused })
  await finishConsent(provider, req, res, details, holds)
}
