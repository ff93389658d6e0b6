import type { ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import { type Access, consentPage } from './consent.ts'
import { type Details, now, type PagesContext, send } from './context.ts'
import { html } from './html.ts'
import { MAX_PASSWORD_LENGTH } from './passwords.ts'

/** The sign-in page: one button per identity provider, and the local account form when enabled. */
export async function loginPage(
  context: PagesContext,
  res: ServerResponse,
  details: Details,
  status = 200,
  error?: string,
) {
  const { csrf, interactionPath, identityProviders, localAccounts } = context
  const token = await csrf.issue(details.uid, details.exp - now())
  const base = `${interactionPath}${details.uid}`
  const client = await clientName(context.provider, details.params.client_id as string)
  const hidden = html`<input type="hidden" name="csrf" value="${token}">`
  const buttons = [...identityProviders.values()].map(
    (idp) =>
      html`<form method="post" action="${base}/federate/${idp.provider.id}">${hidden}<button type="submit">Continue with ${idp.provider.name}</button></form>`,
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

/** The account chooser: continue as the session's account, or sign in with another. */
export async function chooserPage(context: PagesContext, res: ServerResponse, details: Details) {
  const token = await context.csrf.issue(details.uid, details.exp - now())
  const base = `${context.interactionPath}${details.uid}`
  const client = await clientName(context.provider, details.params.client_id as string)
  const hidden = html`<input type="hidden" name="csrf" value="${token}">`
  send(
    res,
    200,
    'Continue?',
    html`<p>Continue to <strong class="client-name">${client.name}</strong> as <strong class="account">${await accountLabel(context, details.session?.accountId)}</strong>?</p>
<div class="actions">
<form method="post" action="${base}/continue">${hidden}<button type="submit" class="primary">Continue</button></form>
<form method="post" action="${base}/switch">${hidden}<button type="submit">Use another account</button></form>
</div>`,
  )
}

export async function consentScreen(
  context: PagesContext,
  res: ServerResponse,
  details: Details,
  access: Access,
  refused: Access,
) {
  const { csrf, interactionPath, issuer } = context
  const token = await csrf.issue(details.uid, details.exp - now())
  const clientId = details.params.client_id as string
  const client = await clientName(context.provider, clientId)
  send(
    res,
    200,
    'Allow access?',
    consentPage({
      action: `${interactionPath}${details.uid}/consent`,
      csrf: token,
      clientId,
      clientName: client.name,
      account: await accountLabel(context, details.session?.accountId),
      // The provider fills it in when a client with one registered URI omits it.
      redirectUri: details.params.redirect_uri as string,
      access,
      refused,
      issuer,
    }),
  )
}

/** The account as the user knows it: the email when there is one, else the username. */
async function accountLabel(context: PagesContext, accountId: string | undefined): Promise<string> {
  const user = await context.store.users.findById(accountId ?? '')
  const email = user?.claims.email
  return typeof email === 'string' && email ? email : (user?.username ?? '')
}

async function clientName(provider: Provider, clientId: string): Promise<{ name: string }> {
  const client = await provider.Client.find(clientId).catch(() => undefined)
  const name = client?.metadata().client_name
  return { name: typeof name === 'string' && name.trim() !== '' ? name : clientId }
}
