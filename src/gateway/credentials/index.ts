import type { UpstreamCredentialsMode } from '../config.ts'
import { exchangeMode } from './exchange.ts'
import type { CredentialMode, ModeContext } from './mode.ts'
import { noneMode } from './none.ts'
import { passthroughMode } from './passthrough.ts'
import { vaultMode } from './vault.ts'

export type { CredentialMode, ModeContext } from './mode.ts'
export { UserActionRequired } from './mode.ts'

/** Every `upstream_credentials.mode`, by name. */
export const MODES: Record<UpstreamCredentialsMode, (context: ModeContext) => CredentialMode> = {
  none: noneMode,
  passthrough: passthroughMode,
  exchange: exchangeMode,
  vault: vaultMode,
}

export const credentialMode = (name: UpstreamCredentialsMode, context: ModeContext): CredentialMode =>
  MODES[name](context)
