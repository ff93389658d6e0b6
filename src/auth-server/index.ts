import { createPublicKey, type JsonWebKey } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import Provider from 'oidc-provider'
import { recordTokenEvents } from './audit.ts'
import { providerConfiguration } from './configuration.ts'
import { type ConsoleHandler, createConsole } from './console/index.ts'
import { defaultScopeMiddleware } from './default_scope.ts'
import { devInteractions } from './dev_interactions.ts'
import { rootPathCookies } from './interactions/security.ts'
import {
  deriveKey,
  loadSigningKeys,
  type PrivateJwk,
  retainWhileSigning,
  rotateSigningKey,
  signedTokenLifetimeSeconds,
} from './keys.ts'
import { logoutRedirectMiddleware } from './logout.ts'
import { createMount, INTERACTION_PREFIX, ROUTES } from './mount.ts'
import { type AuthorizationServerOptions, resolveOptions } from './options.ts'
import { StoreOutage } from './outage.ts'
import { TokenRequestOverLimit, tokenRateLimitMiddleware } from './rate_limit.ts'
import { registrationMiddleware } from './registration.ts'
import { deferredWritesMiddleware, withRequestCache } from './request_cache.ts'
import { rotationScopeMiddleware } from './rotation.ts'
import { registerTokenExchange, unauthorizedClientMiddleware } from './token_exchange.ts'
import { UserScopes } from './user_scopes.ts'
import { TokenVault } from './vault/vault.ts'

export { MACHINE_TOKEN_GTY } from './configuration.ts'
export { CONSOLE_CLIENT_ID, type ConsoleHandler, type UpstreamHealth } from './console/index.ts'
export { DEV_USERNAME, devInteractions } from './dev_interactions.ts'
export {
  AUTH_SERVER_ERRORS,
  AuthServerError,
  type AuthServerErrorCode,
} from './errors.ts'
export { type GrantView, listGrants } from './grants.ts'
export {
  createLocalUser,
  type IdentityProvider,
  identityProviderRedirectUri,
  type LoginAndConsentOptions,
  loginAndConsent,
  revokeConsent,
} from './interactions/index.ts'
export {
  type RotateOptions,
  type Rotation,
  rotateSigningKey,
  type SigningAlgorithm,
  signedTokenLifetimeSeconds,
} from './keys.ts'
export { INTERACTION_PREFIX, ROUTES } from './mount.ts'
export type {
  AuthorizationServerOptions,
  AuthServerLogger,
  AuthServerTtl,
  InteractionContext,
  InteractionHandler,
  InteractionsFactory,
  ProtectedResource,
  StaticClient,
} from './options.ts'
export { resolveTtl } from './options.ts'
export type { RateLimit } from './rate_limit.ts'
export {
  deleteUser,
  disableUser,
  enableUser,
  REVOCATION_KEEP_SECONDS,
  revokeClient,
  revokeGrants,
  setUserPassword,
} from './revocation.ts'
export {
  ACCESS_TOKEN_TYPE,
  TOKEN_EXCHANGE_GRANT,
  type TokenExchangeRule,
} from './token_exchange.ts'
export type { ScopeGrant, UserScopesOptions } from './user_scopes.ts'
export { parseVaultKeys, type VaultKey } from './vault/cipher.ts'
export type { VaultConnectionOptions } from './vault/provider.ts'
export { TokenVault, type TokenVaultOptions, type VaultAnswer } from './vault/vault.ts'

export interface AuthorizationServer {
  /** The issuer identifier, byte-exact, for the guard's `authorizationServers` and the PRM. */
  issuer: string
  provider: Provider
  /** The kid that signs new tokens. */
  signingKid: string
  /** The token vault, when connections are configured. */
  vault: TokenVault | undefined
  /** The published JWKS keys (public parts only), for a guard in the same process (`jwks` of its options). */
  publicJwks(): JsonWebKey[]
  /**
   * Serves the request when it belongs to the authorization server (see {@link createMount}); false leaves it
   * to the host. Mount it before the MCP routes on the same origin.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean | Promise<boolean>
  /** The admin console (`<issuer path>/admin`) when administrators are configured; mount it like `handle`. */
  console: ConsoleHandler | undefined
  close(): Promise<void>
}

/**
 * Gatehouse's authorization server: `oidc-provider` configured for MCP (discovery at every URL clients try,
 * PKCE S256 always, `resource`-bound RFC 9068 JWT access tokens, refresh rotation with reuse detection,
 * CIMD, rate-limited idempotent DCR, client credentials, DPoP, revocation, introspection), with signing keys
 * generated on first start and kept encrypted in the store.
 */
export async function createAuthorizationServer(
  input: AuthorizationServerOptions,
): Promise<AuthorizationServer> {
  const options = resolveOptions(input)
  const keys = await loadSigningKeys(options.store, options.secret, options.signingAlgorithm)
  const interactionPath = `${options.issuerPath}${INTERACTION_PREFIX}`
  // The claims of a sign-in at an identity provider count as long as a grant made during its session.
  const userScopes = new UserScopes(
    options.userScopes,
    options.store,
    options.ttl.session + options.ttl.grant,
  )
  const provider = new Provider(
    options.issuer,
    providerConfiguration(options, keys, interactionPath, userScopes),
  )
  // The mount sets X-Forwarded-Host and -Proto from the issuer on every request it forwards (URLs follow the
  // issuer); the client address never comes from Koa (`ctx.ip` is the first, client-written, entry).
  provider.proxy = true
  const outage = new StoreOutage(options.logger)
  provider.on('server_error', (ctx, error) => {
    // Answered 429 by the rate limit's middleware.
    if (error instanceof TokenRequestOverLimit) return
    if (!outage.serverError(ctx, error)) {
      options.logger.warn('authorization server error', { error: error.message })
    }
  })
  recordTokenEvents(provider, options.store, options.logger)
  provider.use(outage.middleware(ROUTES.token))
  provider.use(deferredWritesMiddleware(ROUTES.authorization, options.store))
  provider.use(rootPathCookies(provider))
  provider.use(rotationScopeMiddleware(ROUTES.token))
  provider.use(defaultScopeMiddleware(options, ROUTES.authorization))
  provider.use(registrationMiddleware(options, provider, ROUTES.registration))
  provider.use(logoutRedirectMiddleware(options, ROUTES.end_session))
  provider.use(tokenRateLimitMiddleware(options.store, ROUTES.token, options.tokenRateLimit, options.proxy))
  provider.use(unauthorizedClientMiddleware(ROUTES.token))
  const vault = input.vault?.connections.length
    ? new TokenVault(options.store, options.logger, { issuer: options.issuer, interactionPath }, input.vault)
    : undefined
  const interactions = (options.interactions ?? devInteractions)(provider, {
    issuer: options.issuer,
    interactionPath,
    store: options.store,
    logger: options.logger,
    trustProxy: options.proxy,
    userScopes,
    sessionBindingKey: deriveKey(options.secret, 'session binding'),
    sessionTtl: options.ttl.session,
    vault,
  })
  const publicJwks = keys.map(({ kid, alg, use, ...jwk }) => ({
    ...createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'jwk' }),
    kid,
    alg,
    use,
  }))
  const signingKid = (keys[0] as { kid: string }).kid
  if (options.tokenExchange.rules.length > 0) {
    registerTokenExchange(provider, {
      issuer: options.issuer,
      store: options.store,
      policy: options.tokenExchange,
      publicJwks,
      signingKey: keys[0] as PrivateJwk,
      ttl: options.ttl.exchangedToken,
    })
  }
  const adminConsole = options.consoleAdmins.length
    ? createConsole({
        issuer: options.issuer,
        provider,
        store: options.store,
        logger: options.logger,
        admins: options.consoleAdmins,
        staticClients: options.clients,
        signingKid,
        rotateKey: (by) =>
          rotateSigningKey(options.store, options.secret, {
            alg: options.signingAlgorithm,
            minimumKeepSeconds: signedTokenLifetimeSeconds(options.ttl),
            by,
          }),
        vault,
      })
    : undefined
  const stopRetaining = retainWhileSigning(options.store, signingKid, signedTokenLifetimeSeconds(options.ttl))
  return {
    issuer: options.issuer,
    provider,
    signingKid,
    vault,
    publicJwks: () => publicJwks.map((jwk) => ({ ...jwk })),
    handle: withRequestCache(
      createMount(options.issuer, interactionPath, interactions, provider.callback(), options.allowedOrigins),
    ),
    console: adminConsole,
    close: async () => stopRetaining(),
  }
}
