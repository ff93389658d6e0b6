import { readFileSync } from 'node:fs'
import { fail } from '../../config/errors.ts'
import { resourceMetadataUrl } from '../../guard/index.ts'
import {
  createOnBehalfOf,
  OnBehalfOfError,
  type OnBehalfOfErrorCode,
  type OnBehalfOfOptions,
  type Target,
} from '../../on-behalf-of/index.ts'
import { GatewayError, type GatewayErrorCode, RETRY_SOON_SECONDS } from '../errors.ts'
import type { CredentialMode, ModeContext } from './mode.ts'

const challenge = (error: string) => (metadata: string) => ({
  'www-authenticate': `Bearer error="${error}", resource_metadata="${metadata}"`,
})

/**
 * Each way an exchange fails, as the gateway answers it (the upstream has seen nothing of the request), with
 * the headers of the answer given the resource metadata URL.
 */
const REFUSALS: Record<
  OnBehalfOfErrorCode,
  { code: GatewayErrorCode; headers?: (metadata: string) => Record<string, string> }
> = {
  // The user may not have a token for the upstream: a 403 the client reads as a scope problem.
  exchange_refused: { code: 'exchange_refused', headers: challenge('insufficient_scope') },
  // The provider no longer takes the user's token (revoked, expired there): signing in again helps.
  subject_rejected: { code: 'exchange_subject_rejected', headers: challenge('invalid_token') },
  exchange_failed: { code: 'exchange_failed' },
  provider_unavailable: {
    code: 'exchange_unavailable',
    headers: () => ({ 'retry-after': String(RETRY_SOON_SECONDS) }),
  },
}

/**
 * `exchange`: each request to the upstream carries a token the gateway got for the upstream's audience by
 * exchanging the client's token (RFC 8693, or Entra's on-behalf-of flow) with its own client credentials,
 * at the embedded authorization server or at `upstream_credentials.exchange.issuer`. The client's token goes
 * to that token endpoint only, never to the upstream. Tokens are kept per client token, audience and scope
 * until shortly before they expire (src/on-behalf-of/, shared with servers that embed the guard).
 */
export function exchangeMode(context: ModeContext): CredentialMode {
  if (context.upstream.startsWith('stdio:'))
    fail('upstream_credentials.mode exchange needs an HTTP upstream: a stdio command gets no headers')
  const settings = context.settings.exchange
  const profile = settings.profile ?? 'rfc8693'
  const target: Target = {
    audience: profile === 'rfc8693' ? (settings.audience ?? context.upstream) : settings.audience,
    scope: settings.scope,
  }
  if (profile === 'entra_obo' && target.scope === undefined)
    fail(
      'upstream_credentials.exchange.scope is required with profile entra_obo, e.g. api://<app id>/.default',
    )
  const exchanger = exchangerFor(clientOptions(settings, context))
  const metadata = resourceMetadataUrl(context.resource)
  return {
    async headers(principal) {
      try {
        const token = await exchanger.tokenFor(principal.token, target)
        return { authorization: `Bearer ${token.accessToken}` }
      } catch (error) {
        if (!(error instanceof OnBehalfOfError)) throw error
        const refusal = REFUSALS[error.code]
        throw new GatewayError(refusal.code, {
          detail: error.detail,
          cause: error,
          ...(refusal.headers && { headers: refusal.headers(metadata) }),
        })
      }
    },
    published: new Map(),
    startupWarning: undefined,
    async start() {
      await exchanger.check()
    },
  }
}

type ExchangeSettings = ModeContext['settings']['exchange']

/** The gateway's client at the exchanging server, checked for what the schema cannot see alone. */
function clientOptions(settings: ExchangeSettings, context: ModeContext): OnBehalfOfOptions {
  const where = 'upstream_credentials.exchange'
  const issuer = settings.issuer ?? (settings.token_endpoint ? undefined : context.authorizationServer)
  if (issuer === undefined && settings.token_endpoint === undefined)
    fail(`${where} needs issuer or token_endpoint: no embedded authorization server runs to exchange at`)
  const clientId = settings.client_id ?? fail(`${where}.client_id is required`)
  const method =
    settings.client_auth ?? (settings.private_key_file ? 'private_key_jwt' : 'client_secret_basic')
  if (method === 'private_key_jwt' && !settings.private_key_file)
    fail(`${where}.private_key_file is required with client_auth private_key_jwt`)
  if (method !== 'private_key_jwt' && !settings.client_secret)
    fail(`${where}.client_secret (or GATEHOUSE_EXCHANGE_CLIENT_SECRET) is required with ${method}`)
  let privateKey: string | undefined
  if (method === 'private_key_jwt') {
    try {
      privateKey = readFileSync(settings.private_key_file as string, 'utf8')
    } catch (error) {
      fail(`${where}.private_key_file: ${(error as Error).message}`)
    }
  }
  return {
    clientId,
    clientSecret: settings.client_secret,
    privateKey,
    keyId: settings.key_id,
    method,
    profile: settings.profile ?? 'rfc8693',
    targetParameter: settings.target_parameter ?? 'audience',
    timeoutMs: settings.timeout_ms,
    cacheSize: settings.cache_size,
    ...(issuer !== undefined && { issuer }),
    ...(settings.token_endpoint !== undefined && { tokenEndpoint: settings.token_endpoint }),
    ...(settings.subject_token_type !== undefined && { subjectTokenType: settings.subject_token_type }),
  }
}

function exchangerFor(options: OnBehalfOfOptions) {
  try {
    return createOnBehalfOf(options)
  } catch (error) {
    // A key file that holds no private key of a supported type, say.
    return fail(`upstream_credentials.exchange: ${(error as Error).message}`)
  }
}
