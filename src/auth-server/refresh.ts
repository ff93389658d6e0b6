import type { Configuration } from 'oidc-provider'
import type { ResolvedOptions } from './options.ts'
import { assertRefreshResource } from './resources.ts'
import { isRetry, issuesRefreshToken } from './rotation.ts'
import type { UserScopes } from './user_scopes.ts'

const YEAR = 365.25 * 86_400

/**
 * Refresh tokens for every client that registered the `refresh_token` grant (no `offline_access` needed:
 * MCP clients rarely ask for it), independent of the browser session, rotated on each use for public
 * clients (MCP AS-24); reuse of a rotated token revokes the whole grant (the provider's default policy),
 * except a retry within the reuse interval (rotation.ts), which always rotates. Each refresh first aligns
 * the grant with what its user holds now: the new access token is cut from it.
 */
export function refreshTokenPolicy(options: ResolvedOptions, userScopes: UserScopes): Partial<Configuration> {
  return {
    issueRefreshToken: (_ctx, client) => issuesRefreshToken(client),
    expiresWithSession: () => false,
    // The one hook between loading the grant and cutting the access token's scope, before anything is consumed.
    rotateRefreshToken: async (ctx) => {
      assertRefreshResource(ctx, options)
      const grant = ctx.oidc.entities.Grant
      if (grant) await userScopes.align(grant)
      if (isRetry()) return true
      const { RefreshToken: refreshToken, Client: client } = ctx.oidc.entities
      if (!refreshToken || !client || refreshToken.totalLifetime() >= YEAR) return false
      if (client.clientAuthMethod === 'none' && !refreshToken.isSenderConstrained()) return true
      return refreshToken.ttlPercentagePassed() >= 70
    },
  }
}
