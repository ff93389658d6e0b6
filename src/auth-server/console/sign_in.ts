import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ClientMetadata } from 'oidc-provider'
import { recordAudit } from '../audit.ts'
import { constantTimeEqual } from '../interactions/security.ts'
import { ROUTES } from '../mount.ts'
import type { ConsoleContext } from './context.ts'
import { ConsoleRefusal } from './context.ts'

/** The console signs in as an OAuth client of its own authorization server (public, PKCE, one redirect URI). */
export const CONSOLE_CLIENT_ID = 'gatehouse-console'
const SIGN_IN_SECONDS = 600

export const consolePath = (issuer: string) => `${new URL(issuer).pathname.replace(/\/$/, '')}/admin`
const callbackUri = (issuer: string) => `${issuer}/admin/callback`

/** The provider's registration of the console (added to the static clients when admins are configured). */
export function consoleClient(issuer: string): ClientMetadata {
  return {
    client_id: CONSOLE_CLIENT_ID,
    client_name: 'Gatehouse console',
    application_type: 'web',
    redirect_uris: [callbackUri(issuer)],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }
}

interface PendingSignIn {
  verifier: string
  returnTo: string
}

const challengeOf = (verifier: string) => createHash('sha256').update(verifier).digest('base64url')

/**
 * Sends the browser to the authorization server's `/authorize` with `prompt=login`: an administrator signs
 * in afresh on the same page as every user (local account or identity provider). The state and the PKCE
 * verifier stay server-side, found by a SameSite=Lax cookie (the way back may start at an identity provider).
 */
export async function startSignIn(context: ConsoleContext, res: ServerResponse, returnTo: string) {
  const state = randomBytes(32).toString('base64url')
  const verifier = randomBytes(32).toString('base64url')
  const pending: PendingSignIn = { verifier, returnTo }
  await context.pendingSignIns.upsert(state, { ...pending }, SIGN_IN_SECONDS)
  context.stateCookie.set(res, state, SIGN_IN_SECONDS)
  const url = new URL(`${context.issuer}${ROUTES.authorization}`)
  url.search = new URLSearchParams({
    client_id: CONSOLE_CLIENT_ID,
    response_type: 'code',
    redirect_uri: callbackUri(context.issuer),
    scope: 'openid',
    state,
    code_challenge: challengeOf(verifier),
    code_challenge_method: 'S256',
    prompt: 'login',
  }).toString()
  res.writeHead(303, { location: url.href, 'content-length': 0 }).end()
}

/**
 * The way back from `/authorize`: the state must be this browser's, the code the console's, for its redirect
 * URI and PKCE challenge, unused (consumed here, atomically), and the account an administrator. The code is
 * redeemed in process (the provider's own record), so no token is ever issued to the console.
 */
export async function finishSignIn(context: ConsoleContext, req: IncomingMessage, res: ServerResponse) {
  const query = new URL(req.url ?? '/', context.issuer).searchParams
  const state = query.get('state') ?? ''
  const cookie = context.stateCookie.read(req) ?? ''
  context.stateCookie.clear(res)
  if (!state || !constantTimeEqual(state, cookie)) throw new ConsoleRefusal('console_sign_in_failed')
  const pending = (await context.pendingSignIns.find(state)) as PendingSignIn | undefined
  await context.pendingSignIns.destroy(state)
  if (!pending || query.get('iss') !== context.issuer) throw new ConsoleRefusal('console_sign_in_failed')
  const code = await context.provider.AuthorizationCode.find(query.get('code') ?? '').catch(() => undefined)
  if (
    !code?.isValid ||
    code.clientId !== CONSOLE_CLIENT_ID ||
    code.redirectUri !== callbackUri(context.issuer) ||
    code.codeChallengeMethod !== 'S256' ||
    code.codeChallenge !== challengeOf(pending.verifier)
  ) {
    throw new ConsoleRefusal('console_sign_in_failed')
  }
  // The store's consume is a compare-and-set: of two racing callbacks, one fails here.
  await code.consume().catch(() => {
    throw new ConsoleRefusal('console_sign_in_failed')
  })
  // The grant served this sign-in only: no token is ever taken from it, so it is not kept.
  if (code.grantId) await (await context.provider.Grant.find(code.grantId))?.destroy()
  const user = await context.store.users.findById(code.accountId ?? '')
  if (!context.sessions.isAdmin(user)) {
    await recordAudit(context.store, 'admin.refused', { userId: code.accountId })
    throw new ConsoleRefusal('console_not_admin')
  }
  await recordAudit(context.store, 'admin.signed_in', { userId: user.id })
  await context.sessions.start(res, user)
  return pending.returnTo
}
