import { UPSTREAM_JWKS_PATH, UpstreamIdentity } from '../identity.ts'
import type { CredentialMode, ModeContext } from './mode.ts'

/**
 * `none`: the client's token stays at the gateway. The upstream learns the caller from `X-Gatehouse-*`
 * headers and a short-lived assertion signed by the gateway, whose key is published at {@link UPSTREAM_JWKS_PATH}.
 */
export function noneMode(context: ModeContext): CredentialMode {
  const identity = new UpstreamIdentity(context.resource, context.upstream)
  return {
    headers: (principal) => identity.headers(principal.token),
    published: new Map([[UPSTREAM_JWKS_PATH, identity.jwks]]),
    startupWarning: undefined,
  }
}
