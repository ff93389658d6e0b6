import type { TokenVault } from '../../auth-server/vault/vault.ts'
import type { Settings } from '../../config/schema.ts'
import type { Principal } from '../identity.ts'

/** What a credential mode knows when the gateway starts. */
export interface ModeContext {
  /** The gateway's canonical MCP URL: the issuer of anything the mode signs. */
  resource: string
  /** Names the upstream: the audience of anything the mode signs for it. */
  upstream: string
  /** The `upstream_credentials` block of the configuration: each mode reads and checks its own settings there. */
  settings: Settings['upstream_credentials']
  /** The embedded authorization server's issuer, when it runs. */
  authorizationServer: string | undefined
  /** The embedded authorization server's token vault; undefined with an external authorization server. */
  vault: TokenVault | undefined
}

/**
 * Thrown by {@link CredentialMode.headers} when the caller must act before the upstream may be called (connect
 * an account at `url`): the gateway answers the request itself and the upstream sees nothing of it.
 */
export class UserActionRequired extends Error {
  readonly url: string
  constructor(message: string, url: string) {
    super(message)
    this.url = url
  }
}

/**
 * How the gateway tells the upstream who is calling (`upstream_credentials.mode`). The gateway asks the mode
 * and never branches on its name: a new mode is one file implementing this and one line in `MODES`.
 */
export interface CredentialMode {
  /** Headers added to each request an authenticated caller sends to an HTTP upstream. */
  headers(principal: Principal): Promise<Record<string, string>> | Record<string, string>
  /** Documents the mode serves on the gateway's origin, by path (JSON, publicly cacheable). */
  readonly published: ReadonlyMap<string, unknown>
  /** Said once at start when the mode weakens something the operator should know about. */
  readonly startupWarning: string | undefined
  /** Checks what the mode relies on (a provider reachable) once the gateway listens; throwing stops the start. */
  start?(): Promise<void>
}
