import type { Configuration } from 'oidc-provider'
import { errors } from 'oidc-provider'
import { clientAddress } from '../guard/lib/http.ts'
import type { ResolvedOptions } from './options.ts'
import { userClientProblem } from './registration.ts'

type Features = NonNullable<Configuration['features']>
type KoaContext = Parameters<NonNullable<Configuration['renderError']>>[0]

/**
 * Client ID Metadata Documents (draft-02 in oidc-provider 9.13). The provider's own fetch keeps its SSRF
 * guard (no special-use IPs after resolution, no redirects, 5 KiB, 2.5 s) and never caches failures, so
 * fetches are rate-limited per `client_id`, and per client address with the registrations (a fetch is a
 * client seen for the first time), through the shared store. A document yields a client acting for a
 * signed-in user only, as a registration does.
 */
export function clientIdMetadataDocument(options: ResolvedOptions): Features {
  const { limit, windowSeconds } = options.cimd.rateLimit
  return {
    clientIdMetadataDocument: {
      enabled: true,
      ack: 'draft-02',
      allowFetch: async (ctx: KoaContext, clientId: string) => {
        // A first sight of a client is a registration: it counts in the registrations of the address too.
        const address = clientAddress(ctx.req, options.proxy)
        const perAddress = options.registration.rateLimit
        const allowed =
          (await options.store.hit(`cimd:${clientId}`, limit, windowSeconds)) &&
          (await options.store.hit(`register:${address}`, perAddress.limit, perAddress.windowSeconds))
        if (!allowed) options.logger.warn('client metadata document fetches rate-limited', { clientId })
        return allowed
      },
      allowClient: (_ctx: KoaContext, client: { metadata(): Record<string, unknown> }) => {
        const problem = userClientProblem(client.metadata())
        if (problem) throw new errors.InvalidClientMetadata(problem)
        return true
      },
    },
  } as Features
}
