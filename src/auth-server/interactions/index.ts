import type { Store } from '../../storage/store.ts'
import { recordAudit } from '../audit.ts'
import { AuthServerError } from '../errors.ts'
import { InternalSignIn } from '../internal_sign_in.ts'
import { ROUTES } from '../mount.ts'
import type { InteractionsFactory } from '../options.ts'
import { checkRate, type RateLimit } from '../rate_limit.ts'
import { revokeGrants } from '../revocation.ts'
import { SessionBinding } from './binding.ts'
import { connectSignInClient } from './connect_sign_in.ts'
import type { PagesContext } from './context.ts'
import {
  checkIdentityProviders,
  type IdentityProvider,
  IdentityProviderClient,
  identityProviderRedirectUri,
} from './identity_provider.ts'
import { route } from './router.ts'
import { CsrfTokens, InteractionCookie, isLoopbackHost } from './security.ts'
import { type BackoffOptions, SignInBackoff } from './throttle.ts'

export { type IdentityProvider, identityProviderRedirectUri } from './identity_provider.ts'
export { createLocalUser, hashPassword, MIN_PASSWORD_LENGTH, verifyPassword } from './passwords.ts'

export interface LoginAndConsentOptions {
  /** The operator's OpenID Connect providers, offered as one "Continue with <name>" button each. */
  identityProviders?: readonly IdentityProvider[]
  /** The username and password form (accounts made by `createLocalUser`). Default: on when no identity provider is configured. */
  localAccounts?: boolean
  /**
   * Sign-in attempts. `perUserAndAddress`: wrong passwords for one username from one address before each
   * further attempt from there waits (1 s, doubling up to `maxDelaySeconds`); default 5 and 900 s. Good
   * passwords do not count, and the user is not slowed down from other addresses. `perAddress`: every attempt
   * from one address, whatever the username; default 50 per 15 minutes.
   */
  rateLimit?: { perUserAndAddress?: Partial<BackoffOptions>; perAddress?: RateLimit }
}

/**
 * Forgets that `userId` approved `clientId`, so the next authorization asks again, and ends the grants made
 * under it (refresh tokens, and access tokens at the gateway). Returns whether there was a consent or a grant.
 * `by`: the administrator who did it in the console, for the audit event.
 */
export async function revokeConsent(
  store: Store,
  userId: string,
  clientId: string,
  by?: string,
): Promise<boolean> {
  const consent = await store.consents.revoke(userId, clientId)
  const grants = await revokeGrants(store, userId, clientId)
  if (consent || grants > 0)
    await recordAudit(store, 'consent.revoked', { userId, clientId, grants, ...(by ? { by } : {}) })
  return consent || grants > 0
}

/**
 * The login and consent pages of the authorization server: sign-in through the operator's OpenID Connect
 * providers and/or local accounts, then a consent page naming the client, its redirect host and the access
 * asked for, remembered per user and client. Every POST carries a per-interaction CSRF token; pages cannot be
 * framed, cached or leak a referrer. The routes and their checks are in `router.ts`, one handler per file in
 * `routes/`.
 */
export function loginAndConsent(options: LoginAndConsentOptions = {}): InteractionsFactory {
  const providers = checkIdentityProviders(options.identityProviders ?? [])
  const localAccounts = options.localAccounts ?? providers.length === 0
  if (!localAccounts && providers.length === 0) {
    throw new AuthServerError(
      'options_invalid',
      'login: enable local accounts or configure at least one identity provider',
    )
  }
  const backoff = checkBackoff({
    freeFailures: 5,
    maxDelaySeconds: 900,
    ...options.rateLimit?.perUserAndAddress,
  })
  const perAddress = checkRate(
    options.rateLimit?.perAddress ?? { limit: 50, windowSeconds: 900 },
    'login: rateLimit.perAddress',
  )

  return (provider, interactionContext) => {
    const { issuer, interactionPath, store, logger } = interactionContext
    const binding = new SessionBinding(
      issuer,
      interactionContext.sessionBindingKey,
      interactionContext.sessionTtl,
    )
    provider.use(binding.middleware(provider, ROUTES.authorization, logger))
    const issuerUrl = new URL(issuer)
    if (issuerUrl.protocol !== 'https:' && !isLoopbackHost(issuerUrl.hostname)) {
      throw new AuthServerError(
        'options_invalid',
        `login pages need an https issuer (passwords and cookies); ${issuer} is plain http`,
      )
    }
    const identityProviders = new Map(
      providers.map((idp) => [
        idp.id,
        new IdentityProviderClient(idp, identityProviderRedirectUri(issuer, idp.id, interactionPath)),
      ]),
    )
    const context: PagesContext = {
      ...interactionContext,
      provider,
      issuerUrl,
      binding,
      identityProviders,
      identityProviderOrigins: [...new Set([...identityProviders.values()].map((idp) => idp.origin))],
      csrf: new CsrfTokens(store),
      // The stored model's and the cookie's names predate the word "identity provider": renaming them would
      // drop the sign-ins in flight during an upgrade.
      pendingSignIns: store.oidcAdapter('GatehouseUpstreamState'),
      stateCookie: new InteractionCookie(issuer, 'gatehouse-upstream'),
      vaultStates: store.oidcAdapter('GatehouseVaultState'),
      vaultStateCookie: new InteractionCookie(issuer, 'gatehouse-vault'),
      connectSignIn: new InternalSignIn({
        issuer,
        provider,
        client: connectSignInClient(issuer),
        pending: store.oidcAdapter('GatehouseConnectSignIn'),
        stateCookie: new InteractionCookie(issuer, 'gatehouse-connect-signin'),
      }),
      signInBackoff: new SignInBackoff(store, backoff),
      localAccounts,
      perAddress,
    }
    return async (req, res) => {
      if (!(req.url ?? '/').startsWith(interactionPath)) return false
      await route(context, req, res)
      return true
    }
  }
}

function checkBackoff(value: BackoffOptions): BackoffOptions {
  const { freeFailures, maxDelaySeconds } = value
  if (
    !(
      Number.isInteger(freeFailures) &&
      freeFailures >= 0 &&
      Number.isInteger(maxDelaySeconds) &&
      maxDelaySeconds > 0
    )
  ) {
    throw new AuthServerError(
      'options_invalid',
      `login: rateLimit.perUserAndAddress must be { freeFailures, maxDelaySeconds } with whole numbers (freeFailures 0 or more, maxDelaySeconds above 0), not ${JSON.stringify(value)}`,
    )
  }
  return value
}
