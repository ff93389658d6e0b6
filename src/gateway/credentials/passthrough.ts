import type { CredentialMode } from './mode.ts'

/** `passthrough`: the client's own access token goes on to the upstream. Against the MCP spec; warned at start. */
export function passthroughMode(): CredentialMode {
  return {
    headers: (principal) => ({ authorization: `Bearer ${principal.token.token}` }),
    published: new Map(),
    startupWarning:
      'upstream_credentials.mode is passthrough: the client access token is forwarded to the upstream. ' +
      'This violates the MCP authorization spec (tokens must not be passed through) and lets the upstream ' +
      'replay the token; use mode none unless the upstream cannot work without it.',
  }
}
