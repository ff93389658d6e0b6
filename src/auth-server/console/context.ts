import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { ClientMetadata } from 'oidc-provider'
import type { Store } from '../../storage/store.ts'
import { AuthServerError, type PageErrorCode, pageError } from '../errors.ts'
import type { InternalSignIn } from '../internal_sign_in.ts'
import type { Rotation } from '../keys.ts'
import type { AuthServerLogger } from '../options.ts'
import type { TokenVault } from '../vault/vault.ts'
import type { AdminSession, AdminSessions } from './session.ts'
import { type Body, layout } from './views.ts'

/** `/readyz`'s check of the upstream, given by the gateway: true when it answers. */
export type UpstreamHealth = () => Promise<boolean>

/** What the console's pages share: built once per authorization server. */
export interface ConsoleContext {
  issuer: string
  /** `<issuer path>/admin`. */
  base: string
  provider: Provider
  store: Store
  logger: AuthServerLogger
  sessions: AdminSessions
  /** The administrator's sign-in at this authorization server, as its console client. */
  signIn: InternalSignIn
  /** The operator's clients, as the provider has them (the console's own included). */
  staticClients: readonly ClientMetadata[]
  /** The kid this process signs with. */
  signingKid: string
  /** The same rotation as `gatehouse keys rotate`, by this administrator. */
  rotateKey(by: string): Promise<Rotation>
  /** The token vault, when connections are configured: its page lists and revokes them. */
  vault: TokenVault | undefined
}

/** One request to a console page, after the steps before its handler. */
export interface ConsoleExchange {
  req: IncomingMessage
  res: ServerResponse
  query: URLSearchParams
  health: UpstreamHealth
  /** Set by the `signedIn` step. */
  session: AdminSession
  /** Set by the `action` steps (POST). */
  form: URLSearchParams
}

/** A console request answered with this failure page; nothing of the console is shown with it. */
export class ConsoleRefusal extends AuthServerError {
  readonly page: PageErrorCode
  constructor(code: PageErrorCode) {
    super(code)
    this.page = code
  }
}

export function sendPage(res: ServerResponse, status: number, body: Body) {
  const text = layout(body)
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}

export function sendRefusal(res: ServerResponse, refusal: ConsoleRefusal) {
  const { status, title, description } = pageError(refusal.page)
  sendPage(res, status, { title, text: description, code: refusal.page })
}

export function seeOther(res: ServerResponse, location: string) {
  res.writeHead(303, { location, 'content-length': 0 }).end()
}
