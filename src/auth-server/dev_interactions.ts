import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { Store, User } from '../storage/store.ts'
import type { InteractionsFactory } from './options.ts'

export const DEV_USERNAME = 'dev'

/**
 * Development only: every interaction signs in the built-in user `dev` and grants every scope requested
 * for the requested resources, with no page shown. It lets test harnesses run the whole flow without a browser.
 */
export const devInteractions: InteractionsFactory = (provider, { interactionPath, store, logger }) => {
  logger.warn(
    'DEVELOPMENT INTERACTIONS: every authorization signs in the test user "dev" and is approved without asking',
  )
  return async (req, res) => {
    if (!req.url?.startsWith(interactionPath)) return false
    try {
      await finish(provider, store, req, res)
    } catch (error) {
      logger.warn('development interaction failed', { error: (error as Error).message })
      if (!res.headersSent) {
        res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' })
        res.end('This sign-in request expired or is unknown: start again from the client.\n')
      }
    }
    return true
  }
}

async function finish(provider: Provider, store: Store, req: IncomingMessage, res: ServerResponse) {
  const { prompt, params, session, grantId } = await provider.interactionDetails(req, res)
  if (prompt.name === 'login' || !session) {
    const user = await devUser(store)
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: user.id } },
      { mergeWithLastSubmission: false },
    )
    return
  }
  const grant =
    (grantId ? await provider.Grant.find(grantId) : undefined) ??
    new provider.Grant({ accountId: session.accountId, clientId: params.client_id as string })
  const missing = prompt.details as {
    missingOIDCScope?: string[]
    missingOIDCClaims?: string[]
    missingResourceScopes?: Record<string, string[]>
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '))
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims)
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '))
  }
  await provider.interactionFinished(
    req,
    res,
    { consent: { grantId: await grant.save() } },
    { mergeWithLastSubmission: true },
  )
}

async function devUser(store: Store): Promise<User> {
  const existing = await store.users.findByUsername(DEV_USERNAME)
  if (existing) return existing
  try {
    return await store.users.create({
      username: DEV_USERNAME,
      passwordHash: undefined,
      externalId: undefined,
      claims: { name: 'Development User' },
    })
  } catch (error) {
    // Another request created it first.
    const created = await store.users.findByUsername(DEV_USERNAME)
    if (created) return created
    throw error
  }
}
