import { recordAudit } from '../../audit.ts'
import type { Details, Interaction, PagesContext } from '../context.ts'

/** POST of the chooser's "Continue": the session's account confirmed for this client. */
export async function continueAs(context: PagesContext, { req, res, details }: Interaction) {
  const accountId = (details.session as NonNullable<Details['session']>).accountId
  await recordAudit(context.store, 'login.confirmed', {
    userId: accountId,
    clientId: details.params.client_id,
  })
  await context.provider.interactionFinished(
    req,
    res,
    { login: { accountId } },
    { mergeWithLastSubmission: false },
  )
}
