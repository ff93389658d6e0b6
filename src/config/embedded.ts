import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import type {
  AuthServerTtl,
  LoginAndConsentOptions,
  RateLimit,
  ScopeGrant,
  SigningAlgorithm,
  StaticClient,
  TokenExchangeRule,
  VaultConnectionOptions,
} from '../auth-server/index.ts'
import { type GuardSettings, guardSettings } from './apollo.ts'
import { fail } from './errors.ts'
import { MIN_SECRET_LENGTH, type Settings, secretMessage } from './schema.ts'

const DEFAULT_SCOPES = ['mcp']

/** Where the embedded authorization server keeps its state. */
export interface StorageSettings {
  /** Absolute; undefined in development mode: a temporary directory made at start and removed at exit. */
  dataDir: string | undefined
  /** `storage.url`; undefined is the SQLite file in the data directory. */
  url: string | undefined
  /** From GATEHOUSE_SECRET or the file; undefined: read from, or generated into, `<data_dir>/secret`. */
  secret: string | undefined
}

export interface EmbeddedAuthorizationConfig {
  storage: StorageSettings
  /** Development interactions (test user signed in, consent approved) and a throwaway store. */
  dev: boolean
  signingAlgorithm: SigningAlgorithm | undefined
  ttl: AuthServerTtl
  /** `authorization_server.refresh_reuse_interval`; undefined: the server's default (30 s). */
  refreshReuseIntervalSeconds: number | undefined
  login: LoginAndConsentOptions
  /** `authorization_server.token_rate_limit`; undefined: the server's default (300 a minute). */
  tokenRateLimit: RateLimit | undefined
  registration: { enabled?: boolean; rateLimit?: RateLimit }
  cimd: { enabled?: boolean; rateLimit?: RateLimit }
  clients: StaticClient[]
  /** `authorization_server.token_exchange`: who may exchange a user's MCP token for which API and scopes. */
  tokenExchange: TokenExchangeRule[]
  /**
   * `authorization_server.scope_grants`: who holds the scopes beyond the basic ones (the required scopes and
   * `default_tool_scopes`, which every user holds). A tool scope nobody is given is granted to no one.
   */
  scopeGrants: ScopeGrant[]
  /** `authorization_server.console.admins`: who may use the admin console; empty, it is off. */
  consoleAdmins: string[]
  /** `authorization_server.vault`, when connections are declared; the keys are read at start. */
  vault: VaultSettings | undefined
}

export interface VaultSettings {
  connections: VaultConnectionOptions[]
  /** `keys` (GATEHOUSE_VAULT_KEYS) or `keys_file`: exactly one. */
  keys: { text: string } | { file: string }
  refreshBeforeSeconds: number
}

/** `data_dir`, `storage.url` and `secret` as resolved; development mode has a throwaway store and secret. */
export function storageSettings(settings: Settings, dev: boolean): StorageSettings {
  if (dev) return { dataDir: undefined, url: undefined, secret: randomBytes(32).toString('base64url') }
  return { dataDir: resolve(settings.data_dir), url: settings.storage.url, secret: settings.secret }
}

/** No external authorization server (OAUTH_ISSUER_URL, transport.auth.servers): the embedded one serves. */
export const usesEmbeddedAuthorizationServer = (settings: Settings): boolean =>
  settings.transport.auth?.servers === undefined

const TTL_KEYS = {
  access_token: 'accessToken',
  authorization_code: 'authorizationCode',
  refresh_token: 'refreshToken',
  session: 'session',
  grant: 'grant',
  interaction: 'interaction',
  id_token: 'idToken',
  registered_client: 'registeredClient',
  exchanged_token: 'exchangedToken',
} as const satisfies Record<keyof Settings['authorization_server']['ttl'], keyof AuthServerTtl>

/** The `authorization_server` block mapped onto the options of `createAuthorizationServer` and `loginAndConsent`. */
export function embeddedAuthorizationConfig(settings: Settings, dev: boolean): EmbeddedAuthorizationConfig {
  const block = settings.authorization_server
  const { local_accounts: localAccounts } = block.login
  // `login.upstream` is the YAML key (kept for existing files); in the code it is an identity provider.
  const identityProviders = block.login.upstream.map(({ client_id, client_secret, scope, ...provider }) => ({
    ...provider,
    clientId: client_id,
    clientSecret: client_secret,
    ...(scope === undefined ? {} : { scope }),
  }))
  return {
    storage: storageSettings(settings, dev),
    dev,
    signingAlgorithm: block.signing_algorithm as SigningAlgorithm | undefined,
    ttl: Object.fromEntries(
      Object.entries(block.ttl).map(([key, value]) => [TTL_KEYS[key as keyof typeof TTL_KEYS], value]),
    ),
    refreshReuseIntervalSeconds: block.refresh_reuse_interval,
    tokenRateLimit: rateLimitOf(block.token_rate_limit),
    login: { identityProviders, ...(localAccounts === undefined ? {} : { localAccounts }) },
    registration: switchable(block.registration),
    cimd: switchable(block.cimd),
    clients: block.clients as unknown as StaticClient[],
    tokenExchange: block.token_exchange,
    consoleAdmins: block.console.admins ?? [],
    scopeGrants: scopeGrants(
      block.scope_grants,
      identityProviders.map((provider) => provider.id),
    ),
    vault: vaultSettings(block.vault),
  }
}

export function vaultSettings(block: Settings['authorization_server']['vault']): VaultSettings | undefined {
  if (block.connections.length === 0) return undefined
  if ((block.keys === undefined) === (block.keys_file === undefined))
    fail(
      'authorization_server.vault: give the encryption keys once, GATEHOUSE_VAULT_KEYS (vault.keys) or vault.keys_file; ' +
        'an entry is <id>:<base64 of 32 bytes>, e.g. echo "$(date +%Y%m%d):$(openssl rand -base64 32)"',
    )
  return {
    connections: block.connections.map((connection) => ({
      id: connection.id,
      name: connection.name,
      ...(connection.issuer === undefined ? {} : { issuer: connection.issuer }),
      ...(connection.authorization_endpoint === undefined
        ? {}
        : { authorizationEndpoint: connection.authorization_endpoint }),
      ...(connection.token_endpoint === undefined ? {} : { tokenEndpoint: connection.token_endpoint }),
      ...(connection.revocation_endpoint === undefined
        ? {}
        : { revocationEndpoint: connection.revocation_endpoint }),
      clientId: connection.client_id,
      clientSecret: connection.client_secret,
      scopes: connection.scopes,
      ...(connection.authorization_params ? { authorizationParams: connection.authorization_params } : {}),
      ...(connection.header ? { header: connection.header } : {}),
    })),
    keys: block.keys !== undefined ? { text: block.keys } : { file: resolve(block.keys_file as string) },
    refreshBeforeSeconds: block.refresh_before_seconds,
  }
}

/**
 * `scope_grants: [{ scopes: [files:write], users: [alice] }, { scopes: [admin], claim: { name: groups,
 * value: admins, provider: corp } }]`: each rule gives its scopes to the users it names, or to the users of
 * an identity provider whose claim (a string, or a list such as `groups`) has the value.
 */
function scopeGrants(
  rules: Settings['authorization_server']['scope_grants'],
  providers: readonly string[],
): ScopeGrant[] {
  return rules.map((rule, i) => {
    const where = `authorization_server.scope_grants[${i}]`
    if (rule.users === undefined && rule.claim === undefined) {
      fail(`${where} names nobody: give users: [<username>, …] or claim: { name, value }`)
    }
    const provider = rule.claim?.provider
    if (provider !== undefined && !providers.includes(provider)) {
      fail(
        `${where}.claim.provider ${provider} is not an identity provider (login.upstream); known: ${providers.join(', ') || 'none'}`,
      )
    }
    return {
      scopes: rule.scopes,
      ...(rule.users ? { users: rule.users } : {}),
      ...(rule.claim ? { claim: rule.claim } : {}),
    }
  })
}

/**
 * The guard's settings when the embedded server issues the tokens: `transport.auth` as for any server, the
 * scopes given once, in either block. It trusts no server yet: the gateway gives it the one it starts.
 */
export function embeddedGuardSettings(settings: Settings): GuardSettings {
  const auth = settings.transport.auth
  const scopes = settings.authorization_server.scopes
  if (scopes !== undefined && auth?.scopes !== undefined) {
    fail('give the scopes once: authorization_server.scopes or transport.auth.scopes, not both')
  }
  return guardSettings({ ...auth, scopes: auth?.scopes ?? scopes ?? DEFAULT_SCOPES })
}

/** The secret kept in a file, checked as the setting is. */
export function checkSecret(secret: string, where: string): string {
  if (secret.length < MIN_SECRET_LENGTH) fail(`${where} ${secretMessage()}`)
  return secret
}

function switchable(block: {
  enabled?: boolean | undefined
  rate_limit?: { limit: number; window_seconds: number } | undefined
}) {
  return {
    ...(block.enabled === undefined ? {} : { enabled: block.enabled }),
    ...(block.rate_limit ? { rateLimit: rateLimitOf(block.rate_limit) as RateLimit } : {}),
  }
}

function rateLimitOf(setting: { limit: number; window_seconds: number } | undefined): RateLimit | undefined {
  return setting && { limit: setting.limit, windowSeconds: setting.window_seconds }
}
