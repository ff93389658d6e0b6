import type { Configuration } from 'oidc-provider'
import type { ResolvedOptions } from './options.ts'

type Features = NonNullable<Configuration['features']>

/**
 * Client ID Metadata Documents (draft-02 in oidc-provider 9.13). The provider's own fetch keeps its SSRF
 * guard (no special-use IPs after resolution, no redirects, 5 KiB, 2.5 s) and never caches failures, so
 * fetches are rate-limited per `client_id` through the shared store.
 */
export function clientIdMetadataDocument(options: ResolvedOptions): Features {
  const { limit, windowSeconds } = options.cimd.rateLimit
  return {
    clientIdMetadataDocument: {
      enabled: true,
      ack: 'draft-02',
      allowFetch: async (_ctx, clientId) => {
        const allowed = await options.store.hit(`cimd:${clientId}`, limit, windowSeconds)
        if (!allowed) options.logger.warn('client metadata document fetches rate-limited', { clientId })
        return allowed
      },
    },
  } as Features
}
