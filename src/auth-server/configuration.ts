import type { Configuration, KoaContextWithOIDC } from 'oidc-provider'
import type { Store } from '../storage/store.ts'
import { adapterFactory } from './adapter.ts'
import { clientIdMetadataDocument } from './cimd.ts'
import { providerCookies } from './interactions/security.ts'
import { internalGrant } from './internal_sign_in.ts'
import { deriveKey, type PrivateJwk } from './keys.ts'
import { ROUTES } from './mount.ts'
import type { ResolvedOptions } from './options.ts'
import { countTokenRequest } from './rate_limit.ts'
import { refreshTokenPolicy } from './refresh.ts'
import { registeredClientId, selfRegisteredScopeOpen } from './registration.ts'
import { findUser } from './request_cache.ts'
import { resourceIndicators } from './resources.ts'
import { accountAwarePolicy } from './revocation.ts'
import { continueRetry } from './rotation.ts'
import { createSafeFetch } from './safe_fetch.ts'
import { exchangedTokenClaims } from './token_exchange.ts'
import type { UserScopes } from './user_scopes.ts'

/** The `gty` claim of access tokens issued to a client for itself (`client_credentials`): no user behind it. */
export const MACHINE_TOKEN_GTY = 'client_credentials'

/** The `oidc-provider` configuration for MCP (see docs in each helper); `keys[0]` signs. */
export function providerConfiguration(
  options: ResolvedOptions,
  keys: PrivateJwk[],
  interactionPath: string,
  userScopes: UserScopes,
): Configuration {
  const signingKey = keys[0] as PrivateJwk
  const { store, ttl } = options
  const resourceScopes = options.resources.flatMap((r) => r.scopes)
  const machineClients = [...options.declaredClients.values()].some((c) => c.machineResources.size > 0)
  return {
    adapter: adapterFactory(
      store,
      ttl.registeredClient,
      new Set(keys.map((k) => k.alg)),
      options.refreshReuseIntervalSeconds,
    ) as unknown as Configuration['adapter'],
    jwks: { keys: keys as NonNullable<Configuration['jwks']>['keys'] },
    clients: options.clients,
    clientDefaults: {
      // MCP clients are mostly native apps with loopback callbacks on random ports, and public.
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: signingKey.alg,
    },
    extraClientMetadata: selfRegisteredScopeOpen(options.declaredClients),
    scopes: [...new Set(['openid', 'offline_access', ...resourceScopes])],
    responseTypes: ['code'],
    pkce: { required: () => true },
    routes: ROUTES,
    cookies: providerCookies(options.issuer, [deriveKey(options.secret, 'cookies').toString('base64url')]),
    interactions: {
      policy: accountAwarePolicy(),
      url: (_ctx, interaction) => `${interactionPath}${interaction.uid}`,
    },
    loadExistingGrant: async (ctx) => {
      const internal = await internalGrant(ctx, options.internalClientIds)
      if (internal) return internal
      const grantId = await existingGrantId(ctx, store)
      const grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined
      // A remembered grant is reused without a page: it gives only what the user still holds.
      if (grant) await userScopes.align(grant)
      return grant
    },
    findAccount: async (_ctx, sub, token) => {
      const user = await findUser(store, sub)
      // Undefined ends what the account holds: refresh fails (invalid_grant), and so do userinfo and sign-in.
      if (!user || user.disabledAt !== undefined) return undefined
      // The provider's one hook between its checks of a presented refresh token and its reuse detection.
      if (token) await continueRetry(store, token)
      return { accountId: sub, claims: () => ({ ...user.claims, sub }) }
    },
    // RFC 9068 gives a token without a user `sub` = `client_id`; `gty` says so outright, for the resource server.
    // An exchanged token names the client acting for its user (`act`).
    extraTokenClaims: async (_ctx, token) => {
      // Called before every access token is minted: a token request not counted yet is counted here.
      await countTokenRequest(store)
      return token.kind === 'ClientCredentials' ? { gty: MACHINE_TOKEN_GTY } : exchangedTokenClaims(token)
    },
    ...refreshTokenPolicy(options, userScopes),
    fetch: createSafeFetch(options.cimd) as Configuration['fetch'],
    features: {
      devInteractions: { enabled: false },
      registration: {
        enabled: options.registration.enabled,
        issueRegistrationAccessToken: false,
        idFactory: registeredClientId,
      },
      revocation: { enabled: true },
      introspection: {
        enabled: true,
        // Only a declared client that authenticates, about its own tokens, or a declared resource server;
        // never a self-registered client, whatever it authenticates with.
        allowedPolicy: (_ctx, client, token) => {
          const declared = options.declaredClients.get(client.clientId)
          return (
            declared?.confidential === true && (declared.resourceServer || token.clientId === client.clientId)
          )
        },
      },
      // Off unless the operator declared a machine client: no one else can hold the grant anyway.
      clientCredentials: { enabled: machineClients },
      dPoP: { enabled: true },
      userinfo: { enabled: true },
      resourceIndicators: resourceIndicators(options, signingKey),
      ...(options.cimd.enabled ? clientIdMetadataDocument(options) : {}),
    } as Configuration['features'],
    ttl: {
      AccessToken: ttl.accessToken,
      ClientCredentials: ttl.accessToken,
      AuthorizationCode: ttl.authorizationCode,
      RefreshToken: ttl.refreshToken,
      Session: ttl.session,
      Grant: ttl.grant,
      Interaction: ttl.interaction,
      IdToken: ttl.idToken,
    },
  }
}

/** The grant just decided in this authorization's consent, or the session's remembered one for the client. */
async function existingGrantId(ctx: KoaContextWithOIDC, store: Store): Promise<string | undefined> {
  const { result, session, client } = ctx.oidc
  const decided = result?.consent?.grantId
  if (decided) return decided
  if (!client || !session?.accountId) return undefined
  const remembered = session.grantIdFor(client.clientId)
  // The browser session keeps the grant after its consent is revoked: it counts only while the consent does.
  // (The development interactions keep no consent records: they simply approve again.)
  if (!remembered || !(await store.consents.find(session.accountId, client.clientId))) return undefined
  return remembered
}
