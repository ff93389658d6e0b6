import { covers, finishConsent, requestedAccess, splitAccess } from '../consent.ts'
import { confirming, type Interaction, PageRefusal, type PagesContext } from '../context.ts'
import { chooserPage, consentScreen, loginPage } from '../pages.ts'

/**
 * GET of an interaction: the page its prompt asks for (account chooser, sign-in or consent), or straight on
 * when a remembered consent covers what is asked.
 */
export async function show(context: PagesContext, { req, res, details }: Interaction) {
  if (confirming(details)) return chooserPage(context, res, details)
  if (details.prompt.name === 'login' || !details.session) return loginPage(context, res, details)
  if (details.prompt.name !== 'consent') throw new PageRefusal('interaction_expired')
  const { provider, issuer, store, userScopes } = context
  const holds = await userScopes.held(details.session.accountId)
  const { granted, refused } = splitAccess(await requestedAccess(provider, details, issuer), holds)
  const remembered = await store.consents.find(details.session.accountId, details.params.client_id as string)
  // `prompt=consent`: the client wants the user asked, whatever was approved before.
  const asked = String(details.params.prompt ?? '')
    .split(' ')
    .includes('consent')
  if (!asked && remembered && covers(remembered.resources, granted))
    return finishConsent(provider, req, res, details, holds)
  return consentScreen(context, res, details, granted, refused)
}
