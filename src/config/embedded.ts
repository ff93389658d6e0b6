import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import type {
  AuthServerTtl,
  LoginAndConsentOptions,
  ScopeGrant,
  SigningAlgorithm,
  StaticClient,
} from '../auth-server/index.ts'
import type { GuardOptions } from '../guard/index.ts'
import { guardOptionsFromAuthBlock } from './apollo.ts'
import { fail, only } from './errors.ts'

export const DEFAULT_DATA_DIR = './.gatehouse'
const DEFAULT_SCOPES = ['mcp']
const MIN_SECRET_LENGTH = 32
/** The authorization server's own limit (`refreshReuseIntervalSeconds`, src/auth-server/options.ts). */
const MAX_REFRESH_REUSE_INTERVAL = 300
const LOOPBACK = new Set(['127.0.0.1', '::1', '[::1]', 'localhost'])

export const isLoopback = (host: string) => LOOPBACK.has(host)

/** What the command line gave for the data directory; shared by `gatehouse serve` and the admin commands. */
export interface StorageFlags {
  config?: string | undefined
  dataDir?: string | undefined
  dev?: boolean | undefined
}

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
  registration: { enabled?: boolean; rateLimit?: { limit: number; windowSeconds: number } }
  cimd: { enabled?: boolean; rateLimit?: { limit: number; windowSeconds: number } }
  clients: StaticClient[]
  /**
   * `authorization_server.scope_grants`: who holds the scopes beyond the basic ones (the required scopes and
   * `default_tool_scopes`, which every user holds). A tool scope nobody is given is granted to no one.
   */
  scopeGrants: ScopeGrant[]
}

type Env = Record<string, string | undefined>
type Mapping = Record<string, unknown>

/** `data_dir`, `storage.url` and `secret`: flags over GATEHOUSE_* over the file over the defaults. */
export function storageSettings(flags: StorageFlags, env: Env, file: Mapping): StorageSettings {
  const storage = mapping(file.storage, 'storage')
  only(storage, ['url'], 'storage')
  if (flags.dev) return { dataDir: undefined, url: undefined, secret: randomBytes(32).toString('base64url') }
  const dataDir =
    flags.dataDir ?? env.GATEHOUSE_DATA_DIR ?? text(file.data_dir, 'data_dir') ?? DEFAULT_DATA_DIR
  const url = env.GATEHOUSE_STORAGE_URL ?? text(storage.url, 'storage.url')
  if (url !== undefined && !/^(sqlite:|postgres:\/\/|postgresql:\/\/)/.test(url)) {
    fail('storage.url must be sqlite:<file> or postgres://user:password@host/database')
  }
  const secret = env.GATEHOUSE_SECRET ?? text(file.secret, 'secret')
  if (secret !== undefined) checkSecret(secret, 'GATEHOUSE_SECRET (or secret in the file)')
  return { dataDir: resolve(dataDir), url, secret }
}

/** No external authorization server (OAUTH_ISSUER_URL, transport.auth.servers): the embedded one serves. */
export function usesEmbeddedAuthorizationServer(env: Env, auth: unknown): boolean {
  return !env.OAUTH_ISSUER_URL?.trim() && mapping(auth, 'transport.auth').servers === undefined
}

const TTL_KEYS: Record<string, keyof AuthServerTtl> = {
  access_token: 'accessToken',
  authorization_code: 'authorizationCode',
  refresh_token: 'refreshToken',
  session: 'session',
  grant: 'grant',
  interaction: 'interaction',
  id_token: 'idToken',
  registered_client: 'registeredClient',
}
const AS_KEYS = [
  'scopes',
  'signing_algorithm',
  'ttl',
  'refresh_reuse_interval',
  'login',
  'registration',
  'cimd',
  'clients',
  'scope_grants',
]
const UPSTREAM_KEYS = ['id', 'name', 'issuer', 'client_id', 'client_secret', 'scope']

/** The `authorization_server` block mapped onto the options of `createAuthorizationServer` and `loginAndConsent`. */
export function embeddedAuthorizationConfig(
  flags: StorageFlags,
  env: Env,
  file: Mapping,
): EmbeddedAuthorizationConfig {
  const block = mapping(file.authorization_server, 'authorization_server')
  only(block, AS_KEYS, 'authorization_server')
  const ttl = mapping(block.ttl, 'authorization_server.ttl')
  only(ttl, Object.keys(TTL_KEYS), 'authorization_server.ttl')
  const login = mapping(block.login, 'authorization_server.login')
  only(login, ['local_accounts', 'upstream'], 'authorization_server.login')
  const upstream = list(login.upstream, 'authorization_server.login.upstream').map((entry, i) => {
    const where = `authorization_server.login.upstream[${i}]`
    const provider = mapping(entry, where)
    only(provider, UPSTREAM_KEYS, where)
    return {
      id: String(provider.id ?? ''),
      name: String(provider.name ?? ''),
      issuer: String(provider.issuer ?? ''),
      clientId: String(provider.client_id ?? ''),
      clientSecret: String(provider.client_secret ?? ''),
      ...(provider.scope === undefined ? {} : { scope: String(provider.scope) }),
    }
  })
  const localAccounts = login.local_accounts
  if (localAccounts !== undefined && typeof localAccounts !== 'boolean') {
    fail('authorization_server.login.local_accounts must be true or false')
  }
  return {
    storage: storageSettings(flags, env, file),
    dev: flags.dev === true,
    signingAlgorithm: text(block.signing_algorithm, 'authorization_server.signing_algorithm') as
      | SigningAlgorithm
      | undefined,
    ttl: Object.fromEntries(Object.entries(ttl).map(([key, value]) => [TTL_KEYS[key], value])),
    refreshReuseIntervalSeconds: reuseInterval(block.refresh_reuse_interval),
    login: { upstream, ...(typeof localAccounts === 'boolean' ? { localAccounts } : {}) },
    registration: switchable(block.registration, 'authorization_server.registration'),
    cimd: switchable(block.cimd, 'authorization_server.cimd'),
    clients: list(block.clients, 'authorization_server.clients') as StaticClient[],
    scopeGrants: scopeGrants(
      block.scope_grants,
      upstream.map((p) => p.id),
    ),
  }
}

/**
 * `scope_grants: [{ scopes: [files:write], users: [alice] }, { scopes: [admin], claim: { name: groups,
 * value: admins, provider: corp } }]`: each rule gives its scopes to the users it names, or to the users of
 * an upstream provider whose claim (a string, or a list such as `groups`) has the value.
 */
function scopeGrants(value: unknown, providers: readonly string[]): ScopeGrant[] {
  return list(value, 'authorization_server.scope_grants').map((entry, i) => {
    const where = `authorization_server.scope_grants[${i}]`
    const rule = mapping(entry, where)
    only(rule, ['scopes', 'users', 'claim'], where)
    const scopes = words(rule.scopes, `${where}.scopes`)
    if (scopes.length === 0) fail(`${where}.scopes must list at least one scope`)
    if (rule.users === undefined && rule.claim === undefined) {
      fail(`${where} names nobody: give users: [<username>, …] or claim: { name, value }`)
    }
    const users = rule.users === undefined ? undefined : words(rule.users, `${where}.users`)
    const claim = rule.claim === undefined ? undefined : mapping(rule.claim, `${where}.claim`)
    if (claim) {
      only(claim, ['name', 'value', 'provider'], `${where}.claim`)
      text(claim.name, `${where}.claim.name`) ?? fail(`${where}.claim.name is required`)
      text(claim.value, `${where}.claim.value`) ?? fail(`${where}.claim.value is required`)
      const provider = text(claim.provider, `${where}.claim.provider`)
      if (provider !== undefined && !providers.includes(provider)) {
        fail(
          `${where}.claim.provider ${provider} is not an upstream provider; known: ${providers.join(', ') || 'none'}`,
        )
      }
    }
    return {
      scopes,
      ...(users ? { users } : {}),
      ...(claim ? { claim: claim as NonNullable<ScopeGrant['claim']> } : {}),
    }
  })
}

function reuseInterval(value: unknown): number | undefined {
  if (value === undefined) return undefined
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > MAX_REFRESH_REUSE_INTERVAL) {
    fail(
      `authorization_server.refresh_reuse_interval must be a whole number of seconds from 0 (off) to ${MAX_REFRESH_REUSE_INTERVAL}, not ${JSON.stringify(value)}`,
    )
  }
  return value as number
}

function words(value: unknown, where: string): string[] {
  const items = list(value, where)
  if (!items.every((item) => typeof item === 'string' && item !== ''))
    fail(`${where} must be a list of names`)
  return items as string[]
}

/**
 * The guard's options when the embedded server issues the tokens: `transport.auth` as for any server, the
 * issuer being the origin of the MCP URL. The scopes are given once, in either block.
 */
export function embeddedGuardOptions(auth: unknown, file: Mapping, resource: string): GuardOptions {
  const block = mapping(auth, 'transport.auth')
  const scopes = mapping(file.authorization_server, 'authorization_server').scopes
  if (scopes !== undefined && block.scopes !== undefined) {
    fail('give the scopes once: authorization_server.scopes or transport.auth.scopes, not both')
  }
  const options = guardOptionsFromAuthBlock(
    { scopes: scopes ?? DEFAULT_SCOPES, ...block, servers: [new URL(resource).origin] },
    resource,
  )
  return { ...options, authorizationServers: [{ issuer: new URL(options.resource).origin }] }
}

export function checkSecret(secret: string, where: string): string {
  if (secret.length < MIN_SECRET_LENGTH) {
    fail(
      `${where} must be at least ${MIN_SECRET_LENGTH} characters, e.g. the output of: openssl rand -base64 32`,
    )
  }
  return secret
}

function switchable(value: unknown, where: string) {
  const block = mapping(value, where)
  only(block, ['enabled', 'rate_limit'], where)
  if (block.enabled !== undefined && typeof block.enabled !== 'boolean')
    fail(`${where}.enabled must be true or false`)
  const rate = block.rate_limit === undefined ? undefined : mapping(block.rate_limit, `${where}.rate_limit`)
  if (rate) only(rate, ['limit', 'window_seconds'], `${where}.rate_limit`)
  return {
    ...(block.enabled === undefined ? {} : { enabled: block.enabled as boolean }),
    ...(rate
      ? { rateLimit: { limit: rate.limit as number, windowSeconds: rate.window_seconds as number } }
      : {}),
  }
}

function mapping(value: unknown, where: string): Mapping {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) return fail(`${where} must be a mapping`)
  return value as Mapping
}

function list(value: unknown, where: string): unknown[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) return fail(`${where} must be a list`)
  return value
}

function text(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '') return fail(`${where} must be a non-empty string`)
  return value
}
