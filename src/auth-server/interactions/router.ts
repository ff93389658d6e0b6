import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  confirming,
  consenting,
  type Details,
  type Exchange,
  type Interaction,
  PageRefusal,
  type PagesContext,
  sendFailure,
  signingIn,
} from './context.ts'
import { callback } from './routes/callback.ts'
import { connectPage, connectSignedIn, finishConnect, startConnect } from './routes/connect.ts'
import { connections, disconnect } from './routes/connections.ts'
import { continueAs } from './routes/continue_as.ts'
import { decide } from './routes/decide.ts'
import { federate } from './routes/federate.ts'
import { localLogin } from './routes/local_login.ts'
import { show } from './routes/show.ts'
import { switchAccount } from './routes/switch_account.ts'
import { cspSource, setSecurityHeaders } from './security.ts'

/** A check before a handler: it refuses by throwing a {@link PageRefusal}, or fills in the exchange. */
type Step = (context: PagesContext, exchange: Interaction) => Promise<void> | void

interface Route {
  method: 'GET' | 'POST'
  /** The segments after the interaction path; `:name` takes one segment as `params.name`. */
  path: string
  /** Run in order before the handler (oidc-provider's `use(...)` lists are the model). */
  steps: readonly Step[]
  handle: (context: PagesContext, exchange: Interaction) => Promise<void>
}

const FORM_LIMIT = 16 * 1024
/** What a path parameter must look like for its route to match; others take any one segment. */
const PARAMS: Record<string, RegExp> = { uid: /^[\w-]{1,64}$/, connection: /^[a-z0-9][a-z0-9-]{0,31}$/ }

/** The interaction of this browser, and the one the path names. */
const loadInteraction: Step = async (context, exchange) => {
  let details: Details
  try {
    details = await context.provider.interactionDetails(exchange.req, exchange.res)
  } catch {
    throw new PageRefusal('interaction_expired')
  }
  if (details.uid !== exchange.params.uid) throw new PageRefusal('interaction_expired')
  exchange.details = details
}

/** The last form of the interaction is answered by a redirect chain ending at the client. */
const allowClientRedirect: Step = (context, { res, details }) => {
  const redirectSource = cspSource(details.params.redirect_uri as string)
  const origins = context.identityProviderOrigins
  setSecurityHeaders(res, redirectSource ? [...origins, redirectSource] : origins)
}

const readForm: Step = async (_context, exchange) => {
  const form = await formOf(exchange.req)
  if (!form) throw new PageRefusal('bad_request')
  exchange.form = form
}

const checkCsrf: Step = async (context, { details, form }) => {
  if (!(await context.csrf.check(details.uid, form.get('csrf')))) throw new PageRefusal('csrf_invalid')
}

/** The interaction must be at this prompt: e.g. signing in again during consent would swap the account. */
const prompt =
  (at: (details: Details) => boolean): Step =>
  (_context, { details }) => {
    if (!at(details)) throw new PageRefusal('interaction_expired')
  }

const PAGE = [loadInteraction, allowClientRedirect]
const FORM = [...PAGE, readForm, checkCsrf]

/** The sign-in and consent pages. The first route whose path matches decides; another method gets 405. */
export const PAGE_ROUTES: readonly Route[] = [
  { method: 'GET', path: 'callback/:provider', steps: [], handle: callback },
  // The token vault's pages: no interaction, the signed-in user of the browser session (checked by each).
  { method: 'GET', path: 'connections', steps: [], handle: connections },
  { method: 'POST', path: 'connections/:connection/disconnect', steps: [readForm], handle: disconnect },
  { method: 'GET', path: 'connect/:connection', steps: [], handle: connectPage },
  { method: 'POST', path: 'connect/:connection/start', steps: [readForm], handle: startConnect },
  { method: 'GET', path: 'connected/:connection', steps: [], handle: finishConnect },
  { method: 'GET', path: 'connect-sign-in', steps: [], handle: connectSignedIn },
  { method: 'GET', path: ':uid', steps: PAGE, handle: show },
  { method: 'POST', path: ':uid/login', steps: [...FORM, prompt(signingIn)], handle: localLogin },
  { method: 'POST', path: ':uid/federate/:provider', steps: [...FORM, prompt(signingIn)], handle: federate },
  { method: 'POST', path: ':uid/continue', steps: [...FORM, prompt(confirming)], handle: continueAs },
  { method: 'POST', path: ':uid/switch', steps: [...FORM, prompt(confirming)], handle: switchAccount },
  { method: 'POST', path: ':uid/consent', steps: [...FORM, prompt(consenting)], handle: decide },
]

/** Answers a request under the interaction path: a page, a redirect, or a failure page. */
export async function route(context: PagesContext, req: IncomingMessage, res: ServerResponse) {
  setSecurityHeaders(res, context.identityProviderOrigins)
  const path = (req.url ?? '/').split('?')[0] as string
  const segments = path.slice(context.interactionPath.length).split('/')
  try {
    const [found, params] = match(segments)
    if (!found) throw new PageRefusal('not_found')
    if (req.method !== found.method) throw new PageRefusal('method_not_allowed')
    // `details` is set by the first step of every route that has an interaction; `form` by the POSTs.
    const exchange = { req, res, params, form: new URLSearchParams() } as Exchange as Interaction
    for (const step of found.steps) await step(context, exchange)
    await found.handle(context, exchange)
  } catch (error) {
    if (error instanceof PageRefusal && !res.headersSent) return sendFailure(res, error)
    context.logger.warn('interaction failed', { error: (error as Error).message })
    if (!res.headersSent) sendFailure(res, new PageRefusal('server_error'))
    else res.end()
  }
}

function match(segments: string[]): [Route, Record<string, string>] | [undefined, undefined] {
  for (const candidate of PAGE_ROUTES) {
    const pattern = candidate.path.split('/')
    if (pattern.length !== segments.length) continue
    const params: Record<string, string> = {}
    const matches = pattern.every((part, index) => {
      const segment = segments[index] as string
      if (!part.startsWith(':')) return part === segment
      const name = part.slice(1)
      params[name] = segment
      return PARAMS[name]?.test(segment) ?? true
    })
    if (matches) return [candidate, params]
  }
  return [undefined, undefined]
}

/** A posted form of at most `limit` bytes, or undefined when it is not form-encoded or is larger. */
export async function formOf(req: IncomingMessage, limit = FORM_LIMIT): Promise<URLSearchParams | undefined> {
  if (!(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) return undefined
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) return undefined
    chunks.push(chunk as Buffer)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}
