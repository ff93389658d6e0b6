import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { Store } from '../../storage/store.ts'
import { clientAddress } from '../client_address.ts'
import { AuthServerError, type PageErrorCode, pageError } from '../errors.ts'
import { ROUTES } from '../mount.ts'
import type { InteractionsFactory } from '../options.ts'
import { checkRate, type RateLimit } from '../rate_limit.ts'
import { ACCOUNT_UNCONFIRMED, revokeGrants } from '../revocation.ts'
import { SessionBinding } from './binding.ts'
import {
  type Access,
  consentPage,
  covers,
  finishConsent,
  mergeAccess,
  requestedAccess,
  splitAccess,
} from './consent.ts'
import { html, page, type SafeHtml } from './html.ts'
import { decoy, MAX_PASSWORD_LENGTH, normalizeUsername, verifyPassword } from './passwords.ts'
import {
  CsrfTokens,
  constantTimeEqual,
  cspSource,
  InteractionCookie,
  isLoopbackHost,
  setSecurityHeaders,
} from './security.ts'
import { type BackoffOptions, SignInBackoff } from './throttle.ts'
import {
  checkUpstreamProviders,
  federatedUser,
  type PendingUpstreamLogin,
  Upstream,
  type UpstreamProvider,
  upstreamRedirectUri,
} from './upstream.ts'

export { createLocalUser, hashPassword, MIN_PASSWORD_LENGTH, verifyPassword } from './passwords.ts'
export { type UpstreamProvider, upstreamRedirectUri } from './upstream.ts'

export interface LoginAndConsentOptions {
  /** Offered as one "Continue with <name>" button each. */
  upstream?: readonly UpstreamProvider[]
  /** The username and password form (accounts made by `createLocalUser`). Default: on when no upstream is configured. */
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
 */
export async function revokeConsent(store: Store, userId: string, clientId: string): Promise<boolean> {
  const consent = await store.consents.revoke(userId, clientId)
  const grants = await revokeGrants(store, userId, clientId)
  if (consent || grants > 0)
    await store.audit.append({ at: now(), type: 'consent.revoked', data: { userId, clientId, grants } })
  return consent || grants > 0
}

// The upstream leg must come back within this; OAuth security BCP suggests about ten minutes for `state`.
const UPSTREAM_STATE_TTL = 600
const FORM_LIMIT = 16 * 1024
const UID = /^[\w-]{1,64}$/

type Details = Awaited<ReturnType<Provider['interactionDetails']>>

/**
 * The login and consent pages of the authorization server: sign-in through the operator's OpenID Connect
 * providers and/or local accounts, then a consent page naming the client, its redirect host and the access
 * asked for, remembered per user and client. Every POST carries a per-interaction CSRF token; pages cannot be
 * framed, cached or leak a referrer.
 */
export function loginAndConsent(options: LoginAndConsentOptions = {}): InteractionsFactory {
  const providers = checkUpstreamProviders(options.upstream ?? [])
  const localAccounts = options.localAccounts ?? providers.length === 0
  if (!localAccounts && providers.length === 0) {
    throw new AuthServerError(
      'options_invalid',
      'login: enable local accounts or configure at least one upstream provider',
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

  return (provider, context) => {
    const { issuer, interactionPath, store, logger, trustProxy, userScopes } = context
    const binding = new SessionBinding(issuer, context.sessionBindingKey, context.sessionTtl)
    provider.use(binding.middleware(provider, ROUTES.authorization, logger))
    const issuerUrl = new URL(issuer)
    if (issuerUrl.protocol !== 'https:' && !isLoopbackHost(issuerUrl.hostname)) {
      throw new AuthServerError(
        'options_invalid',
        `login pages need an https issuer (passwords and cookies); ${issuer} is plain http`,
      )
    }
    const upstreams = new Map(
      providers.map((p) => [p.id, new Upstream(p, upstreamRedirectUri(issuer, p.id, interactionPath))]),
    )
    const upstreamOrigins = [...new Set([...upstreams.values()].map((u) => u.origin))]
    const csrf = new CsrfTokens(store)
    const pendingLogins = store.oidcAdapter('GatehouseUpstreamState')
    const stateCookie = new InteractionCookie(issuer, 'gatehouse-upstream')
    const signInBackoff = new SignInBackoff(store, backoff)

    const fail = (res: ServerResponse, failure: PageErrorCode, extra?: SafeHtml, retryAfter?: number) => {
      const { status, title, description: text } = pageError(failure)
      if (retryAfter !== undefined) res.setHeader('retry-after', String(retryAfter))
      send(
        res,
        status,
        title,
        html`<p class="error" role="alert">${text}</p>${extra}<p><small>Error code: <code>${failure}</code></small></p>`,
      )
    }

    const audit = (type: string, data: Record<string, unknown>) =>
      store.audit.append({ at: now(), type, data })

    async function loginPage(res: ServerResponse, details: Details, status = 200, error?: string) {
      const token = await csrf.issue(details.uid, details.exp - now())
      const base = `${interactionPath}${details.uid}`
      const client = await clientName(provider, details.params.client_id as string)
      const hidden = html`<input type="hidden" name="csrf" value="${token}">`
      const buttons = [...upstreams.values()].map(
        (u) =>
          html`<form method="post" action="${base}/federate/${u.provider.id}">${hidden}<button type="submit">Continue with ${u.provider.name}</button></form>`,
      )
      const local = html`<form method="post" action="${base}/login">${hidden}
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required maxlength="${MAX_PASSWORD_LENGTH}">
<button type="submit" class="primary">Sign in</button>
</form>`
      send(
        res,
        status,
        'Sign in',
        html`<p>Sign in to continue to <strong>${client.name}</strong>.</p>
${error ? html`<p class="error" role="alert">${error}</p>` : ''}
${buttons.length ? html`<div class="providers">${buttons}</div>` : ''}
${buttons.length && localAccounts ? html`<p><small>or with a local account</small></p>` : ''}
${localAccounts ? local : ''}`,
      )
    }

    async function showConsent(res: ServerResponse, details: Details, access: Access, refused: Access) {
      const token = await csrf.issue(details.uid, details.exp - now())
      const clientId = details.params.client_id as string
      const client = await clientName(provider, clientId)
      send(
        res,
        200,
        'Allow access?',
        consentPage({
          action: `${interactionPath}${details.uid}/consent`,
          csrf: token,
          clientId,
          clientName: client.name,
          account: await accountLabel(details.session?.accountId),
          // The provider fills it in when a client with one registered URI omits it.
          redirectUri: details.params.redirect_uri as string,
          access,
          refused,
          issuer,
        }),
      )
    }

    async function chooserPage(res: ServerResponse, details: Details) {
      const token = await csrf.issue(details.uid, details.exp - now())
      const base = `${interactionPath}${details.uid}`
      const client = await clientName(provider, details.params.client_id as string)
      const hidden = html`<input type="hidden" name="csrf" value="${token}">`
      send(
        res,
        200,
        'Continue?',
        html`<p>Continue to <strong class="client-name">${client.name}</strong> as <strong class="account">${await accountLabel(details.session?.accountId)}</strong>?</p>
<div class="actions">
<form method="post" action="${base}/continue">${hidden}<button type="submit" class="primary">Continue</button></form>
<form method="post" action="${base}/switch">${hidden}<button type="submit">Use another account</button></form>
</div>`,
      )
    }

    /** The account as the user knows it: the email when there is one, else the username. */
    async function accountLabel(accountId: string | undefined): Promise<string> {
      const user = await store.users.findById(accountId ?? '')
      const email = user?.claims.email
      return typeof email === 'string' && email ? email : (user?.username ?? '')
    }

    /** Only the confirmation of an existing session is asked for, not a new sign-in (max_age, prompt=login…). */
    const confirming = (details: Details) =>
      details.session !== undefined &&
      details.prompt.name === 'login' &&
      details.prompt.reasons.every((reason) => reason === ACCOUNT_UNCONFIRMED)

    async function show(req: IncomingMessage, res: ServerResponse, details: Details) {
      if (confirming(details)) return chooserPage(res, details)
      if (details.prompt.name === 'login' || !details.session) return loginPage(res, details)
      if (details.prompt.name !== 'consent') return fail(res, 'interaction_expired')
      const holds = await userScopes.held(details.session.accountId)
      const { granted, refused } = splitAccess(await requestedAccess(provider, details, issuer), holds)
      const remembered = await store.consents.find(
        details.session.accountId,
        details.params.client_id as string,
      )
      // `prompt=consent`: the client wants the user asked, whatever was approved before.
      const asked = String(details.params.prompt ?? '')
        .split(' ')
        .includes('consent')
      if (!asked && remembered && covers(remembered.resources, granted))
        return finishConsent(provider, req, res, details, holds)
      return showConsent(res, details, granted, refused)
    }

    async function localLogin(
      req: IncomingMessage,
      res: ServerResponse,
      details: Details,
      form: URLSearchParams,
    ) {
      if (!localAccounts) return fail(res, 'not_found')
      // One character past the longest valid username: still matches nobody, and keeps buckets and audit small.
      const username = normalizeUsername(form.get('username') ?? '').slice(0, 65)
      const password = form.get('password') ?? ''
      const address = clientAddress(req, trustProxy)
      // Wrong passwords slow down guessing one account from one address; every attempt counts against the
      // address, so spraying many accounts is slowed down too. Neither locks the user out elsewhere.
      const withinAddress = await store.hit(
        `login:addr:${address}`,
        perAddress.limit,
        perAddress.windowSeconds,
      )
      const admission = withinAddress
        ? await signInBackoff.admit(username, address)
        : { retryAfter: perAddress.windowSeconds }
      if ('retryAfter' in admission) {
        await audit('login.rate_limited', { username, address })
        return fail(res, 'rate_limited', undefined, admission.retryAfter)
      }
      const user =
        username && password.length <= MAX_PASSWORD_LENGTH
          ? await store.users.findByUsername(username)
          : undefined
      const valid = await verifyPassword(password, user?.passwordHash ?? (await decoy()))
      const succeeded = user?.passwordHash !== undefined && valid
      await signInBackoff.settle(admission.ticket, succeeded)
      if (!user || !succeeded) {
        await audit('login.failed', { username, address })
        return loginPage(res, details, 401, 'Wrong username or password.')
      }
      await audit('login.succeeded', { userId: user.id, method: 'local' })
      binding.set(res, user.id)
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: user.id } },
        { mergeWithLastSubmission: false },
      )
    }

    async function federate(res: ServerResponse, details: Details, providerId: string | undefined) {
      const upstream = upstreams.get(providerId ?? '')
      if (!upstream) return fail(res, 'not_found')
      let started: Awaited<ReturnType<Upstream['start']>>
      try {
        started = await upstream.start(details.uid)
      } catch (error) {
        logger.warn('upstream provider discovery failed', {
          provider: upstream.provider.id,
          error: (error as Error).message,
        })
        return fail(res, 'upstream_unavailable')
      }
      await pendingLogins.upsert(started.state, { ...started.pending }, UPSTREAM_STATE_TTL)
      // Set only now, right before leaving for the upstream provider, and only for this browser.
      stateCookie.set(res, started.state, UPSTREAM_STATE_TTL)
      redirect(res, started.url.href)
    }

    async function callback(req: IncomingMessage, res: ServerResponse, providerId: string | undefined) {
      const upstream = upstreams.get(providerId ?? '')
      if (!upstream) return fail(res, 'not_found')
      const callbackUrl = new URL(req.url ?? '/', issuerUrl.origin)
      const state = callbackUrl.searchParams.get('state') ?? ''
      const browserState = stateCookie.read(req) ?? ''
      stateCookie.clear(res)
      if (!state || !browserState || !constantTimeEqual(state, browserState))
        return fail(res, 'upstream_state_invalid')
      const pending = (await pendingLogins.find(state)) as
        | (PendingUpstreamLogin & { consumed?: number })
        | undefined
      if (!pending || pending.providerId !== upstream.provider.id) return fail(res, 'upstream_state_invalid')
      if (pending.consumed !== undefined) return fail(res, 'upstream_state_used')
      try {
        await pendingLogins.consume(state)
      } catch {
        return fail(res, 'upstream_state_used')
      }
      const retry = html`<p><a href="${interactionPath}${pending.uid}">Choose another way to sign in</a></p>`
      const upstreamError = callbackUrl.searchParams.get('error')
      if (upstreamError !== null) {
        await audit('login.upstream_refused', {
          provider: upstream.provider.id,
          error: upstreamError.slice(0, 64),
        })
        return fail(res, 'upstream_denied', retry)
      }
      let identity: Awaited<ReturnType<Upstream['finish']>>
      try {
        identity = await upstream.finish(callbackUrl, state, pending)
      } catch (error) {
        logger.warn('upstream sign-in response refused', {
          provider: upstream.provider.id,
          ...describe(error),
        })
        await audit('login.upstream_failed', { provider: upstream.provider.id })
        return fail(res, 'upstream_failed', retry)
      }
      const interaction = await provider.Interaction.find(pending.uid)
      if (!interaction) return fail(res, 'interaction_expired')
      // Another authorization started in this browser since holds the (Path=/) resume cookie now: resuming
      // would finish that one instead.
      const current = await provider.interactionDetails(req, res).catch(() => undefined)
      if (current?.uid !== pending.uid) return fail(res, 'interaction_expired')
      const user = await federatedUser(store, upstream.provider.id, identity.issuer, identity.claims)
      await userScopes.rememberUpstreamClaims(user.id, upstream.provider.id, identity.claims)
      await audit('login.succeeded', { userId: user.id, method: upstream.provider.id })
      binding.set(res, user.id)
      // The result is written directly (the interaction is the one found by `state`, checked above against
      // this browser's interaction cookie); the provider's resume step still requires the resume cookie.
      interaction.result = { login: { accountId: user.id } }
      await interaction.save(interaction.exp - now())
      redirect(res, interaction.returnTo)
    }

    async function continueAs(req: IncomingMessage, res: ServerResponse, details: Details) {
      const accountId = (details.session as NonNullable<Details['session']>).accountId
      await audit('login.confirmed', { userId: accountId, clientId: details.params.client_id })
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId } },
        { mergeWithLastSubmission: false },
      )
    }

    /**
     * Ends this browser's session and starts the same authorization again: the binding cleared, the start
     * drops the session cookie too, and the user signs in afresh (no account switch inside the interaction).
     */
    async function switchAccount(res: ServerResponse, details: Details) {
      const session = details.session as NonNullable<Details['session']>
      const existing = session.cookie ? await provider.Session.find(session.cookie) : undefined
      await existing?.destroy()
      await audit('login.switch_account', { userId: session.accountId })
      binding.clear(res)
      redirect(res, restartUrl(details.params))
    }

    function restartUrl(params: Details['params']): string {
      const url = new URL(`${issuer.replace(/\/$/, '')}${ROUTES.authorization}`)
      for (const [key, value] of Object.entries(params)) {
        for (const item of Array.isArray(value) ? value : [value]) {
          if (item !== undefined && item !== null) url.searchParams.append(key, String(item))
        }
      }
      return url.href
    }

    async function decide(
      req: IncomingMessage,
      res: ServerResponse,
      details: Details,
      form: URLSearchParams,
    ) {
      if (details.prompt.name !== 'consent' || !details.session) return fail(res, 'interaction_expired')
      const userId = details.session.accountId
      const clientId = details.params.client_id as string
      if (form.get('decision') !== 'approve') {
        await audit('consent.denied', { userId, clientId })
        await provider.interactionFinished(
          req,
          res,
          { error: 'access_denied', error_description: 'the user denied the authorization request' },
          { mergeWithLastSubmission: false },
        )
        return
      }
      const holds = await userScopes.held(userId)
      const { granted, refused } = splitAccess(await requestedAccess(provider, details, issuer), holds)
      const previous = await store.consents.find(userId, clientId)
      await store.consents.save({
        userId,
        clientId,
        resources: mergeAccess(previous?.resources, granted),
        grantedAt: now(),
      })
      await audit('consent.granted', { userId, clientId, resources: granted, notHeld: refused })
      await finishConsent(provider, req, res, details, holds)
    }

    async function interaction(req: IncomingMessage, res: ServerResponse, segments: string[]) {
      const [uid = '', action = '', argument] = segments
      if (!UID.test(uid) || segments.length > (action === 'federate' ? 3 : 2)) return fail(res, 'not_found')
      const isPost = req.method === 'POST'
      if (isPost === (action === '') || (req.method !== 'GET' && !isPost))
        return fail(res, 'method_not_allowed')
      let details: Details
      try {
        details = await provider.interactionDetails(req, res)
      } catch {
        return fail(res, 'interaction_expired')
      }
      if (details.uid !== uid) return fail(res, 'interaction_expired')
      // The last form of the interaction is answered by a redirect chain ending at the client.
      const redirectSource = cspSource(details.params.redirect_uri as string)
      setSecurityHeaders(res, redirectSource ? [...upstreamOrigins, redirectSource] : upstreamOrigins)
      if (!isPost) return show(req, res, details)
      const form = await readForm(req)
      if (!form) return fail(res, 'bad_request')
      if (!(await csrf.check(uid, form.get('csrf')))) return fail(res, 'csrf_invalid')
      if (action === 'continue' || action === 'switch') {
        if (!confirming(details)) return fail(res, 'interaction_expired')
        return action === 'continue' ? continueAs(req, res, details) : switchAccount(res, details)
      }
      // Signing in again in the middle of consent would swap the account under the pending grant.
      const signingIn = details.prompt.name === 'login' || !details.session
      if ((action === 'login' || action === 'federate') && !signingIn) return fail(res, 'interaction_expired')
      if (action === 'login') return localLogin(req, res, details, form)
      if (action === 'federate') return federate(res, details, argument)
      if (action === 'consent') return decide(req, res, details, form)
      return fail(res, 'not_found')
    }

    return async (req, res) => {
      const url = req.url ?? '/'
      if (!url.startsWith(interactionPath)) return false
      setSecurityHeaders(res, upstreamOrigins)
      const path = url.split('?')[0] as string
      const segments = path.slice(interactionPath.length).split('/')
      try {
        if (segments[0] === 'callback' && segments.length === 2) {
          if (req.method !== 'GET') fail(res, 'method_not_allowed')
          else await callback(req, res, segments[1])
        } else {
          await interaction(req, res, segments)
        }
      } catch (error) {
        logger.warn('interaction failed', { error: (error as Error).message })
        if (!res.headersSent) fail(res, 'server_error')
        else res.end()
      }
      return true
    }
  }
}

async function clientName(provider: Provider, clientId: string): Promise<{ name: string }> {
  const client = await provider.Client.find(clientId).catch(() => undefined)
  const name = client?.metadata().client_name
  return { name: typeof name === 'string' && name.trim() !== '' ? name : clientId }
}

function send(res: ServerResponse, status: number, title: string, body: SafeHtml) {
  const text = page(title, body)
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}

function redirect(res: ServerResponse, location: string) {
  res.writeHead(303, { location, 'content-length': 0 })
  res.end()
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  if (!(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) return undefined
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > FORM_LIMIT) return undefined
    chunks.push(chunk as Buffer)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
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

/** openid-client's messages are generic ("invalid response encountered"): the reason is in the cause. */
function describe(error: unknown): Record<string, unknown> {
  const { message, code, cause } = error as {
    message?: string
    code?: string
    cause?: { message?: string; error?: string }
  }
  return { error: message, code, reason: cause?.message ?? cause?.error }
}

function now(): number {
  return Math.floor(Date.now() / 1000)
}
