import type { Principal } from '../identity.ts'

/** What a credential mode knows when the gateway starts. */
export interface ModeContext {
  /** The gateway's canonical MCP URL: the issuer of anything the mode signs. */
  resource: string
  /** Names the upstream: the audience of anything the mode signs for it. */
  upstream: string
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
}
