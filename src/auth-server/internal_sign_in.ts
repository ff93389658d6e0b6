import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { ClientMetadata, KoaContextWithOIDC } from 'oidc-provider'
import type { OidcAdapter } from '../storage/store.ts'
import { constantTimeEqual, type InteractionCookie } from './interactions/security.ts'
import { ROUTES } from './mount.ts'

/**
 * A page of this server that signs its user in as an OAuth client of its own authorization server (the admin
 * console, the token vault's connect page): a public client with one redirect URI, registered by Gatehouse.
 */
export interface InternalClient {
  clientId: string
  clientName: string
  callbackUri: string
}

/** The provider's registration of an internal client (added to the static clients when its page is on). */
export function internalClientMetadata({
  clientId,
  clientName,
  callbackUri,
}: InternalClient): ClientMetadata {
  return {
    client_id: clientId,
    client_name: clientName,
    application_type: 'web',
    redirect_uris: [callbackUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }
}

/**
 * An internal client is this server's own page, not a third party: its sign-in asks no consent. The grant
 * gives `openid` only, and no token is ever taken from it (the code is redeemed in process).
 */
export async function internalGrant(ctx: KoaContextWithOIDC, clientIds: ReadonlySet<string>) {
  const { client, session } = ctx.oidc
  if (!client || !clientIds.has(client.clientId) || !session?.accountId) return undefined
  const grant = new ctx.oidc.provider.Grant({ accountId: session.accountId, clientId: client.clientId })
  grant.addOIDCScope('openid')
  await grant.save()
  return grant
}

export interface InternalSignInOptions {
  issuer: string
  provider: Provider
  client: InternalClient
  /** Sign-ins under way, by their `state`. */
  pending: OidcAdapter
  /** Binds a sign-in to the browser that started it; SameSite=Lax: the way back may start at an identity provider. */
  stateCookie: InteractionCookie
  /** `login`: the user signs in afresh even when the browser has a session. */
  prompt?: 'login'
}

interface PendingSignIn {
  verifier: string
  returnTo: string
}

/** Who signed in, and where the page that started the sign-in wanted to go back to. */
export interface SignedInAs {
  accountId: string
  returnTo: string
}

const SIGN_IN_SECONDS = 600
const challengeOf = (verifier: string) => createHash('sha256').update(verifier).digest('base64url')

/**
 * A sign-in through the authorization server's own `/authorize`, the same page as every user's (local account
 * or identity provider). The state and the PKCE verifier stay server-side, found by the state cookie; the code
 * comes back to the client's one redirect URI and is redeemed in process, so no token is ever issued.
 */
export class InternalSignIn {
  readonly #options: InternalSignInOptions
  constructor(options: InternalSignInOptions) {
    this.#options = options
  }

  /** Sends the browser to `/authorize`; `returnTo` comes back from {@link finish}, as given. */
  async start(res: ServerResponse, returnTo: string) {
    const { issuer, client, pending, stateCookie, prompt } = this.#options
    const state = randomBytes(32).toString('base64url')
    const verifier = randomBytes(32).toString('base64url')
    const record: PendingSignIn = { verifier, returnTo }
    await pending.upsert(state, { ...record }, SIGN_IN_SECONDS)
    stateCookie.set(res, state, SIGN_IN_SECONDS)
    const url = new URL(`${issuer}${ROUTES.authorization}`)
    url.search = new URLSearchParams({
      client_id: client.clientId,
      response_type: 'code',
      redirect_uri: client.callbackUri,
      scope: 'openid',
      state,
      code_challenge: challengeOf(verifier),
      code_challenge_method: 'S256',
      ...(prompt ? { prompt } : {}),
    }).toString()
    res.writeHead(303, { location: url.href, 'content-length': 0 }).end()
  }

  /**
   * The way back from `/authorize`: the state must be this browser's, the code this client's, for its redirect
   * URI and PKCE challenge, unused (consumed here, atomically), from this issuer. Undefined when any fails.
   */
  async finish(req: IncomingMessage, res: ServerResponse): Promise<SignedInAs | undefined> {
    const { issuer, provider, client, pending, stateCookie } = this.#options
    const query = new URL(req.url ?? '/', issuer).searchParams
    const state = query.get('state') ?? ''
    const cookie = stateCookie.read(req) ?? ''
    stateCookie.clear(res)
    if (!state || !constantTimeEqual(state, cookie)) return undefined
    const record = (await pending.find(state)) as PendingSignIn | undefined
    await pending.destroy(state)
    if (!record || query.get('iss') !== issuer) return undefined
    const code = await provider.AuthorizationCode.find(query.get('code') ?? '').catch(() => undefined)
    if (
      !code?.isValid ||
      !code.accountId ||
      code.clientId !== client.clientId ||
      code.redirectUri !== client.callbackUri ||
      code.codeChallengeMethod !== 'S256' ||
      code.codeChallenge !== challengeOf(record.verifier)
    ) {
      return undefined
    }
    // The store's consume is a compare-and-set: of two racing callbacks, one fails here.
    const consumed = await code.consume().then(
      () => true,
      () => false,
    )
    if (!consumed) return undefined
    // The grant served this sign-in only: no token is ever taken from it, so it is not kept.
    if (code.grantId) await (await provider.Grant.find(code.grantId))?.destroy()
    return { accountId: code.accountId, returnTo: record.returnTo }
  }
}
