import { recordAudit } from '../../audit.ts'
import { type Exchange, now, PageRefusal, type PagesContext, redirect } from '../context.ts'
import { html } from '../html.ts'
import {
  federatedUser,
  type IdentityProviderClient,
  type PendingFederatedSignIn,
} from '../identity_provider.ts'
import { constantTimeEqual } from '../security.ts'

/**
 * GET of the redirect URI registered at an identity provider: the browser's `state` checked against its
 * cookie and spent once, the code redeemed, and the user signed in to the interaction that sent it there.
 */
export async function callback(context: PagesContext, { req, res, params }: Exchange) {
  const { provider, store, logger, interactionPath, stateCookie, pendingSignIns } = context
  const idp = context.identityProviders.get(params.provider ?? '')
  if (!idp) throw new PageRefusal('not_found')
  const callbackUrl = new URL(req.url ?? '/', context.issuerUrl.origin)
  const state = callbackUrl.searchParams.get('state') ?? ''
  const browserState = stateCookie.read(req) ?? ''
  stateCookie.clear(res)
  if (!state || !browserState || !constantTimeEqual(state, browserState))
    throw new PageRefusal('upstream_state_invalid')
  const pending = (await pendingSignIns.find(state)) as
    | (PendingFederatedSignIn & { consumed?: number })
    | undefined
  if (!pending || pending.providerId !== idp.provider.id) throw new PageRefusal('upstream_state_invalid')
  if (pending.consumed !== undefined) throw new PageRefusal('upstream_state_used')
  try {
    await pendingSignIns.consume(state)
  } catch {
    throw new PageRefusal('upstream_state_used')
  }
  const retry = html`<p><a href="${interactionPath}${pending.uid}">Choose another way to sign in</a></p>`
  const refusal = callbackUrl.searchParams.get('error')
  if (refusal !== null) {
    await recordAudit(store, 'login.upstream_refused', {
      provider: idp.provider.id,
      error: refusal.slice(0, 64),
    })
    throw new PageRefusal('upstream_denied', retry)
  }
  let identity: Awaited<ReturnType<IdentityProviderClient['finish']>>
  try {
    identity = await idp.finish(callbackUrl, state, pending)
  } catch (error) {
    logger.warn('identity provider sign-in response refused', {
      provider: idp.provider.id,
      ...describe(error),
    })
    await recordAudit(store, 'login.upstream_failed', { provider: idp.provider.id })
    throw new PageRefusal('upstream_failed', retry)
  }
  const interaction = await provider.Interaction.find(pending.uid)
  if (!interaction) throw new PageRefusal('interaction_expired')
  // Another authorization started in this browser since holds the (Path=/) resume cookie now: resuming
  // would finish that one instead.
  const current = await provider.interactionDetails(req, res).catch(() => undefined)
  if (current?.uid !== pending.uid) throw new PageRefusal('interaction_expired')
  const user = await federatedUser(store, idp.provider.id, identity.issuer, identity.claims)
  await context.userScopes.rememberProviderClaims(user.id, idp.provider.id, identity.claims)
  await recordAudit(store, 'login.succeeded', { userId: user.id, method: idp.provider.id })
  context.binding.set(res, user.id)
  // The result is written directly (the interaction is the one found by `state`, checked above against
  // this browser's interaction cookie); the provider's resume step still requires the resume cookie.
  interaction.result = { login: { accountId: user.id } }
  await interaction.save(interaction.exp - now())
  redirect(res, interaction.returnTo)
}

/** openid-client's messages are generic ("invalid response encountered"): the reason is in the cause. */
function describe(error: unknown): Record<string, unknown> {
  const { message, code, cause } = error as {
    message?: string
    code?: string
    cause?: { message?: string; error?: string }
  }
  return { error: message, code, reason: cause?.message ?? cause?.error }
}
