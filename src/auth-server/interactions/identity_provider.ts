import * as oidc from 'openid-client'
import type { Store, User } from '../../storage/store.ts'
import { AuthServerError } from '../errors.ts'
import { isLoopbackHost } from './security.ts'

/** An operator's OpenID Connect provider that users sign in with (Auth0, Okta, Keycloak, Entra, Google, …). */
export interface IdentityProvider {
  /** In the callback path: `[a-z0-9-]`, stable (it is registered at the provider). */
  id: string
  /** Shown on the button: "Continue with <name>". */
  name: string
  issuer: string
  clientId: string
  clientSecret: string
  /** Default `openid email profile`. */
  scope?: string
}

const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,31}$/

/** The redirect URI to register at the identity provider for `providerId`, given the interaction path. */
export function identityProviderRedirectUri(
  issuer: string,
  providerId: string,
  interactionPath?: string,
): string {
  const path = interactionPath ?? `${new URL(issuer).pathname.replace(/\/$/, '')}/interaction/`
  return `${new URL(issuer).origin}${path}callback/${providerId}`
}

export function checkIdentityProviders(providers: readonly IdentityProvider[]): IdentityProvider[] {
  const seen = new Set<string>()
  for (const provider of providers) {
    const where = `identity provider ${JSON.stringify(provider?.id)}`
    if (typeof provider?.id !== 'string' || !PROVIDER_ID.test(provider.id)) {
      throw new AuthServerError(
        'options_invalid',
        `${where}: id must be 1 to 32 of a-z, 0-9 and '-' (it is part of the callback URL)`,
      )
    }
    if (seen.has(provider.id)) throw new AuthServerError('options_invalid', `${where} is configured twice`)
    seen.add(provider.id)
    const url = URL.parse(provider.issuer ?? '')
    if (!url || !(url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname)))) {
      throw new AuthServerError('options_invalid', `${where}: issuer must be an https URL`)
    }
    if (!provider.name || !provider.clientId || !provider.clientSecret) {
      throw new AuthServerError('options_invalid', `${where}: name, clientId and clientSecret are required`)
    }
  }
  return [...providers]
}

/** What the browser carries to the identity provider and back, kept server-side under the `state` value. */
export interface PendingFederatedSignIn {
  uid: string
  providerId: string
  codeVerifier: string
  nonce: string
}

/**
 * One identity provider through openid-client: discovery (retried after a failure, cached after success),
 * authorization code with PKCE S256, `state` and `nonce`, RFC 9207 `iss` and the ID token checked.
 */
export class IdentityProviderClient {
  readonly provider: IdentityProvider
  readonly redirectUri: string
  #configuration: Promise<oidc.Configuration> | undefined

  constructor(provider: IdentityProvider, redirectUri: string) {
    this.provider = provider
    this.redirectUri = redirectUri
  }

  get origin(): string {
    return new URL(this.provider.issuer).origin
  }

  configuration(): Promise<oidc.Configuration> {
    if (!this.#configuration) {
      const { issuer, clientId, clientSecret } = this.provider
      // Plain http is only accepted for a loopback issuer (checked at start): a provider on this machine.
      const insecure = new URL(issuer).protocol === 'http:'
      this.#configuration = oidc
        .discovery(
          new URL(issuer),
          clientId,
          { redirect_uris: [this.redirectUri] },
          oidc.ClientSecretBasic(clientSecret),
          {
            execute: insecure ? [oidc.allowInsecureRequests] : [],
            timeout: 10,
          },
        )
        .catch((error: unknown) => {
          this.#configuration = undefined
          throw error
        })
    }
    return this.#configuration
  }

  async start(uid: string): Promise<{ url: URL; state: string; pending: PendingFederatedSignIn }> {
    const configuration = await this.configuration()
    const codeVerifier = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const nonce = oidc.randomNonce()
    const url = oidc.buildAuthorizationUrl(configuration, {
      redirect_uri: this.redirectUri,
      response_type: 'code',
      scope: this.provider.scope ?? 'openid email profile',
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    })
    return { url, state, pending: { uid, providerId: this.provider.id, codeVerifier, nonce } }
  }

  /** Redeems the code; throws on any mismatch (state, `iss`, nonce, audience, signature). Returns the ID token claims. */
  async finish(callbackUrl: URL, state: string, pending: PendingFederatedSignIn) {
    const configuration = await this.configuration()
    const tokens = await oidc.authorizationCodeGrant(configuration, callbackUrl, {
      pkceCodeVerifier: pending.codeVerifier,
      expectedState: state,
      expectedNonce: pending.nonce,
      idTokenExpected: true,
    })
    const idToken = tokens.claims()
    if (!idToken) throw new Error('the identity provider returned no ID token')
    return {
      issuer: configuration.serverMetadata().issuer,
      claims: { ...(await this.#profile(tokens, idToken.sub)), ...idToken },
    }
  }

  /** Most providers put the profile (name, email) in userinfo only; a failure there costs the profile, not the sign-in. */
  async #profile(tokens: oidc.TokenEndpointResponse, sub: string): Promise<Record<string, unknown>> {
    const configuration = await this.configuration()
    if (!configuration.serverMetadata().userinfo_endpoint) return {}
    return oidc.fetchUserInfo(configuration, tokens.access_token, sub).catch(() => ({}))
  }
}

const KEPT_CLAIMS = [
  'name',
  'email',
  'email_verified',
  'preferred_username',
  'given_name',
  'family_name',
] as const

/** The Gatehouse user for an identity provider's account (`<issuer>|<sub>`), created on first sign-in. */
export async function federatedUser(
  store: Store,
  providerId: string,
  issuer: string,
  claims: Record<string, unknown>,
): Promise<User> {
  const externalId = `${issuer}|${claims.sub as string}`
  const existing = await store.users.findByExternalId(externalId)
  if (existing) return existing
  const kept = Object.fromEntries(
    KEPT_CLAIMS.filter((name) => claims[name] !== undefined).map((name) => [name, claims[name]]),
  )
  try {
    // The colon keeps these apart from local usernames, which cannot contain one.
    return await store.users.create({
      username: `${providerId}:${claims.sub as string}`,
      passwordHash: undefined,
      externalId,
      claims: kept,
    })
  } catch (error) {
    const raced = await store.users.findByExternalId(externalId)
    if (raced) return raced
    throw error
  }
}
