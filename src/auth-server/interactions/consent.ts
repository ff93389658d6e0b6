import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import { alignGrant, type Holds } from '../user_scopes.ts'
import { html, type SafeHtml } from './html.ts'
import { isLoopbackHost } from './security.ts'

/** Scopes per resource; the OpenID scopes (`openid`, `offline_access`, …) are kept under the issuer. */
export type Access = Record<string, string[]>

type Details = Awaited<ReturnType<Provider['interactionDetails']>>
interface Missing {
  missingOIDCScope?: string[]
  missingOIDCClaims?: string[]
  missingResourceScopes?: Record<string, string[]>
}

const OIDC_SCOPE_LABELS: Record<string, string> = {
  openid: 'Know who you are (your account identifier)',
  profile: 'Your name and profile',
  email: 'Your email address',
  offline_access: 'Stay connected while you are away (refresh tokens)',
}

/**
 * What this authorization asks for: the scopes the provider found missing, plus the requested ones the
 * session's grant already holds (native clients are asked every time, with nothing missing).
 */
export async function requestedAccess(provider: Provider, details: Details, issuer: string): Promise<Access> {
  const missing = details.prompt.details as Missing
  const grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined
  const asked = new Set(
    String(details.params.scope ?? '')
      .split(' ')
      .filter(Boolean),
  )
  const held = (scopes: string | undefined) => (scopes ?? '').split(' ').filter((s) => asked.has(s))
  const access = new Map<string, Set<string>>()
  const add = (key: string, scopes: readonly string[]) => {
    const set = access.get(key) ?? new Set<string>()
    for (const scope of scopes) set.add(scope)
    access.set(key, set)
  }
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) add(resource, scopes)
  const resources = details.params.resource
  for (const resource of Array.isArray(resources) ? resources : resources ? [resources as string] : []) {
    add(resource, held(grant?.getResourceScopeEncountered(resource)))
  }
  // The provider also counts resource scopes as OpenID scopes (they are in its `scopes`): keep them per resource.
  const perResource = new Set([...access.values()].flatMap((set) => [...set]))
  const oidcScopes = [...(missing.missingOIDCScope ?? []), ...held(grant?.getOIDCScopeEncountered())].filter(
    (scope) => !perResource.has(scope),
  )
  if (oidcScopes.length) add(issuer, oidcScopes)
  return Object.fromEntries([...access].map(([key, set]) => [key, [...set].sort()]))
}

/** Whether a remembered consent already includes every resource and scope asked for. */
export function covers(remembered: Access, access: Access): boolean {
  return Object.entries(access).every(([key, scopes]) => {
    const granted = remembered[key]
    return granted !== undefined && scopes.every((s) => granted.includes(s))
  })
}

/** Splits what was asked for into what the user holds and what the operator has not given them. */
export function splitAccess(access: Access, holds: Holds): { granted: Access; refused: Access } {
  const pick = (keep: boolean) =>
    Object.fromEntries(
      Object.entries(access)
        .map(([key, scopes]) => [key, scopes.filter((s) => holds(s) === keep)] as const)
        .filter(([, scopes]) => keep || scopes.length > 0),
    )
  return { granted: pick(true), refused: pick(false) }
}

export function mergeAccess(previous: Access | undefined, access: Access): Access {
  const merged: Access = { ...previous }
  for (const [key, scopes] of Object.entries(access))
    merged[key] = [...new Set([...(merged[key] ?? []), ...scopes])].sort()
  return merged
}

/**
 * Grants what the provider found missing and the user holds, records the rest as rejected (so the token
 * leaves it out and the provider does not ask again), and resumes the authorization.
 */
export async function finishConsent(
  provider: Provider,
  req: IncomingMessage,
  res: ServerResponse,
  details: Details,
  holds: Holds,
) {
  const session = details.session as NonNullable<Details['session']>
  const grant =
    (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ??
    new provider.Grant({ accountId: session.accountId, clientId: details.params.client_id as string })
  alignGrant(grant, holds)
  const missing = details.prompt.details as Missing
  const give = (scopes: readonly string[], add: (s: string) => void, reject: (s: string) => void) => {
    const held = scopes.filter(holds)
    const refused = scopes.filter((s) => !holds(s))
    if (held.length) add(held.join(' '))
    if (refused.length) reject(refused.join(' '))
  }
  give(
    missing.missingOIDCScope ?? [],
    (s) => grant.addOIDCScope(s),
    (s) => grant.rejectOIDCScope(s),
  )
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims)
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    give(
      scopes,
      (s) => grant.addResourceScope(resource, s),
      (s) => grant.rejectResourceScope(resource, s),
    )
  }
  const grantId = await grant.save()
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
}

export interface ConsentView {
  action: string
  csrf: string
  clientId: string
  clientName: string
  /** The signed-in account, so a user on a shared browser sees whose access is being given. */
  account: string
  redirectUri: string
  access: Access
  /** Asked for, but not held by the user: shown, never granted. */
  refused: Access
  issuer: string
}

function refusedList(refused: Access, issuer: string): SafeHtml | '' {
  const scopes = Object.entries(refused).flatMap(([key, list]) =>
    list.map(
      (s) =>
        html`<li><code class="refused-scope">${s}</code>${key === issuer ? '' : html` <small>(<code>${key}</code>)</small>`}</li>`,
    ),
  )
  if (scopes.length === 0) return ''
  return html`<div class="warning" role="note" id="not-granted"><p><strong>Not granted:</strong> the app also asked for the following, which your account does not hold. Ask your administrator if you need it.</p><ul>${scopes}</ul></div>`
}

/**
 * The consent form. What a phishing client cannot fake is shown prominently: the host of a metadata-document
 * client_id, and the host the authorization will be sent to, with a warning when that is this computer.
 */
export function consentPage(view: ConsentView): SafeHtml {
  const cimdHost = view.clientId.startsWith('https://') ? URL.parse(view.clientId)?.host : undefined
  const redirect = URL.parse(view.redirectUri)
  const redirectHost = redirect?.host || redirect?.protocol || view.redirectUri
  const loopback = redirect !== null && isLoopbackHost(redirect.hostname)
  const entries = Object.entries(view.access)
  const items = entries.map(([key, scopes]) =>
    key === view.issuer
      ? html`<dt>Your account</dt><dd><ul>${scopes.map((s) => html`<li>${OIDC_SCOPE_LABELS[s] ?? s} <small>(<code>${s}</code>)</small></li>`)}</ul></dd>`
      : html`<dt>MCP server <code class="resource">${key}</code></dt><dd>${
          scopes.length
            ? html`<ul>${scopes.map((s) => html`<li><code class="scope">${s}</code></li>`)}</ul>`
            : html`<p>Access with no specific scope</p>`
        }</dd>`,
  )
  return html`<p><strong class="client-name">${view.clientName}</strong> wants to access MCP servers on your behalf.</p>
<p>You are signed in as <strong class="account">${view.account}</strong>.</p>
${cimdHost ? html`<p>The app is published by<br><span class="host client-host">${cimdHost}</span></p>` : ''}
<p>After you approve, you will be sent to<br><span class="host redirect-host">${redirectHost}</span></p>
${
  loopback
    ? html`<p class="warning" role="note" id="localhost-warning"><strong>This app runs on this computer.</strong> Its address (${redirectHost}) is local, so any program on this computer could receive the access. Approve only if you just started this sign-in from an app you trust.</p>`
    : ''
}
<dl class="access">${items}</dl>
${refusedList(view.refused, view.issuer)}
<form method="post" action="${view.action}">
<input type="hidden" name="csrf" value="${view.csrf}">
<div class="actions">
<button type="submit" name="decision" value="approve" class="primary">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</div>
</form>
<p><small>You can revoke this access later; the app's client ID is <code>${view.clientId}</code>.</small></p>`
}
