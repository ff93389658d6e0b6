import type { Configuration } from 'oidc-provider'
import type { ResolvedOptions } from './options.ts'
import { assertRefreshResource } from './resources.ts'

const YEAR = 365.25 * 86_400

/**
 * Refresh tokens for every client that registered the `refresh_token` grant (no `offline_access` needed:
 * MCP clients rarely ask for it), independent of the browser session, rotated on each use for public
 * clients (MCP AS-24); reuse of a rotated token revokes the whole grant (the provider's default policy).
 */
export function refreshTokenPolicy(options: ResolvedOptions): Partial<Configuration> {
  return {
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: () => false,
    rotateRefreshToken: (ctx) => {
      assertRefreshResource(ctx, options)
      const { RefreshToken: refreshToken, Client: client } = ctx.oidc.entities
      if (!refreshToken || !client || refreshToken.totalLifetime() >= YEAR) return false
      if (client.clientAuthMethod === 'none' && !refreshToken.isSenderConstrained()) return true
      return refreshToken.ttlPercentagePassed() >= 70
    },
  }
}
