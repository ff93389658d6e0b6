import { recordAudit } from '../../audit.ts'
import { type Exchange, PageRefusal, type PagesContext, redirect, send } from '../context.ts'
import { html } from '../html.ts'
import { constantTimeEqual, setSecurityHeaders } from '../security.ts'
import { checkPageCsrf, findSignedIn, signedIn, vaultOf } from './connections.ts'

/** A connection under way at the provider, kept server-side under its `state` until the browser returns. */
interface PendingConnection {
  userId: string
  connectionId: string
  codeVerifier: string
}

/** How long a user may take at the provider (seconds). */
const PENDING_TTL = 600
/** Connections one user may start in that time: each keeps a pending record until it expires. */
const STARTS_PER_WINDOW = 20

function providerOf(context: PagesContext, connectionId: string | undefined) {
  const provider = vaultOf(context).providers.get(connectionId ?? '')
  if (!provider) throw new PageRefusal('not_found')
  return provider
}

/**
 * GET of the connect page: who is signed in, which account is asked for, and the button. A browser without a
 * session is first signed in at this server (the same page as every sign-in) and brought back here.
 */
export async function connectPage(context: PagesContext, { req, res, params }: Exchange) {
  const provider = providerOf(context, params.connection)
  const user = await findSignedIn(context, req)
  if (!user) return context.connectSignIn.start(res, provider.options.id)
  const account = await context.store.users.findById(user.userId)
  const token = await context.csrf.issue(user.csrfKey, 3600)
  const { name, id, scopes } = provider.options
  let authorizationEndpoint: string | undefined
  try {
    authorizationEndpoint = (await provider.configuration()).serverMetadata().authorization_endpoint
  } catch (error) {
    context.logger.warn('vault connect failed', { connection: id, error: (error as Error).message })
    throw new PageRefusal('connect_failed')
  }
  // The button's redirect leads to the provider: this page's form-action must allow its origin.
  if (authorizationEndpoint) setSecurityHeaders(res, [new URL(authorizationEndpoint).origin])
  send(
    res,
    200,
    `Connect ${name}`,
    html`<p>Signed in as <strong>${account?.username ?? user.userId}</strong>.</p>
<p>Your tools will call <strong>${name}</strong> as you${scopes.length ? html`, with: <code>${scopes.join(' ')}</code>` : ''}. You can disconnect at any time on <a href="${context.interactionPath}connections">your connected accounts</a>.</p>
<form method="post" action="${context.interactionPath}connect/${id}/start"><input type="hidden" name="csrf" value="${token}"><button type="submit" class="primary">Connect ${name}</button></form>`,
  )
}

/**
 * GET of the connect page's sign-in callback (see `internal_sign_in.ts` for its checks): back to the connect
 * page of the connection it started from, a configured one (never any other URL), once this browser's session
 * is the account just signed in (else that page would send it round again).
 */
export async function connectSignedIn(context: PagesContext, { req, res }: Exchange) {
  const done = await context.connectSignIn.finish(req, res)
  if (!done) throw new PageRefusal('connect_sign_in_failed')
  const provider = providerOf(context, done.returnTo)
  const user = await findSignedIn(context, req)
  if (user?.userId !== done.accountId) throw new PageRefusal('connect_sign_in_failed')
  redirect(res, `${context.interactionPath}connect/${provider.options.id}`)
}

/** POST of the connect button: PKCE and `state` kept server-side (and `state` in a cookie), then to the provider. */
export async function startConnect(
  context: PagesContext,
  { req, res, params, form }: Exchange & { form: URLSearchParams },
) {
  const provider = providerOf(context, params.connection)
  const user = await signedIn(context, req)
  await checkPageCsrf(context, user, form)
  if (!(await context.store.hit(`vault-connect:${user.userId}`, STARTS_PER_WINDOW, PENDING_TTL)))
    throw new PageRefusal('connect_rate_limited', undefined, PENDING_TTL)
  let start: Awaited<ReturnType<typeof provider.start>>
  try {
    start = await provider.start()
  } catch (error) {
    context.logger.warn('vault connect failed', {
      connection: provider.options.id,
      error: (error as Error).message,
    })
    throw new PageRefusal('connect_failed')
  }
  const pending: PendingConnection = {
    userId: user.userId,
    connectionId: provider.options.id,
    codeVerifier: start.codeVerifier,
  }
  await context.vaultStates.upsert(start.state, { ...pending }, PENDING_TTL)
  context.vaultStateCookie.set(res, start.state, PENDING_TTL)
  redirect(res, start.url.href)
}

/**
 * GET of the redirect URI registered at the provider: `state` checked against this browser's cookie and spent
 * once, the connection made for the user who started it and is still signed in here, the code redeemed with
 * its PKCE verifier, and the tokens sealed into the vault.
 */
export async function finishConnect(context: PagesContext, { req, res, params }: Exchange) {
  const provider = providerOf(context, params.connection)
  const url = new URL(req.url ?? '/', context.issuerUrl.origin)
  const state = url.searchParams.get('state') ?? ''
  const browserState = context.vaultStateCookie.read(req) ?? ''
  context.vaultStateCookie.clear(res)
  if (!state || !browserState || !constantTimeEqual(state, browserState))
    throw new PageRefusal('connect_state_invalid')
  const pending = (await context.vaultStates.find(state)) as
    | (PendingConnection & { consumed?: number })
    | undefined
  if (!pending || pending.connectionId !== provider.options.id || pending.consumed !== undefined)
    throw new PageRefusal('connect_state_invalid')
  try {
    await context.vaultStates.consume(state)
  } catch {
    throw new PageRefusal('connect_state_invalid')
  }
  const user = await signedIn(context, req)
  if (user.userId !== pending.userId) throw new PageRefusal('connect_state_invalid')
  const refusal = url.searchParams.get('error')
  if (refusal !== null) {
    await recordAudit(context.store, 'vault.connect_refused', {
      userId: user.userId,
      connection: provider.options.id,
      error: refusal.slice(0, 64),
    })
    throw new PageRefusal('connect_denied')
  }
  let tokens: Awaited<ReturnType<typeof provider.finish>>
  try {
    tokens = await provider.finish(url, state, pending.codeVerifier)
  } catch (error) {
    context.logger.warn('vault connect failed', {
      connection: provider.options.id,
      error: (error as Error).message,
    })
    throw new PageRefusal('connect_failed')
  }
  await vaultOf(context).connect(user.userId, provider.options.id, tokens)
  redirect(res, `${context.interactionPath}connections`)
}
