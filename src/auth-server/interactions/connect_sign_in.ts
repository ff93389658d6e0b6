import type { ClientMetadata } from 'oidc-provider'
import { type InternalClient, internalClientMetadata } from '../internal_sign_in.ts'
import { INTERACTION_PREFIX } from '../mount.ts'

/** The token vault's connect page signs a user in as an OAuth client of its own authorization server. */
export const CONNECT_CLIENT_ID = 'gatehouse-connect'

/** Its redirect URI: a page under the interaction path (`connect-sign-in` in the router). */
export const connectSignInClient = (issuer: string): InternalClient => ({
  clientId: CONNECT_CLIENT_ID,
  clientName: 'Gatehouse connected accounts',
  callbackUri: `${issuer}${INTERACTION_PREFIX}connect-sign-in`,
})

/** The provider's registration of the connect page (added to the static clients when the vault is on). */
export const connectClient = (issuer: string): ClientMetadata =>
  internalClientMetadata(connectSignInClient(issuer))
