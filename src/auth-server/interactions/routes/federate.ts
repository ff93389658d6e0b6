import { type Interaction, PageRefusal, type PagesContext, redirect } from '../context.ts'
import type { IdentityProviderClient } from '../identity_provider.ts'

// The leg at the identity provider must come back within this; OAuth security BCP suggests about ten minutes
// for `state`.
export const FEDERATION_STATE_TTL = 600

/** POST of a "Continue with <name>" button: off to that identity provider, with `state` kept here. */
export async function federate(context: PagesContext, { res, details, params }: Interaction) {
  const idp = context.identityProviders.get(params.provider ?? '')
  if (!idp) throw new PageRefusal('not_found')
  let started: Awaited<ReturnType<IdentityProviderClient['start']>>
  try {
    started = await idp.start(details.uid)
  } catch (error) {
    context.logger.warn('identity provider discovery failed', {
      provider: idp.provider.id,
      error: (error as Error).message,
    })
    throw new PageRefusal('upstream_unavailable')
  }
  await context.pendingSignIns.upsert(started.state, { ...started.pending }, FEDERATION_STATE_TTL)
  // Set only now, right before leaving for the identity provider, and only for this browser.
  context.stateCookie.set(res, started.state, FEDERATION_STATE_TTL)
  redirect(res, started.url.href)
}
