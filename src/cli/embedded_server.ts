import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import {
  type AuthServerLogger,
  createAuthorizationServer,
  devInteractions,
  identityProviderRedirectUri,
  loginAndConsent,
  parseVaultKeys,
  type VaultKey,
} from '../auth-server/index.ts'
import {
  checkSecret,
  type EmbeddedAuthorizationConfig,
  type StorageSettings,
  type VaultSettings,
} from '../config/embedded.ts'
import type { GatewayConfig } from '../gateway/config.ts'
import { guardLogger } from '../gateway/logger.ts'
import { type EmbeddedAuthorization, type Gateway, startGateway } from '../gateway/server.ts'
import { openStore } from '../storage/index.ts'
import { openSharedRedis, type SharedRedis } from '../storage/redis.ts'
import type { Store } from '../storage/store.ts'
import { failWith } from './errors.ts'
import { storeRevocationCheck } from './revocation_check.ts'

/**
 * Starts `gatehouse serve`: the gateway, and the embedded authorization server on its origin when no external
 * one is configured.
 */
export async function startServe(config: GatewayConfig, logger: Logger): Promise<Gateway> {
  const settings = config.authorizationServer
  const shared = config.sharedState && (await openShared(config.sharedState, logger))
  try {
    const gateway = await startGateway(config, {
      logger,
      shared,
      authorizationServer: settings
        ? (resource) =>
            startEmbeddedAuthorizationServer(settings, resource, {
              logger: guardLogger(logger),
              proxy: config.trustProxy,
              allowedOrigins: config.allowedOrigins,
              // Basic use: the required scopes and the default tool scopes; other tool scopes need a grant.
              everyone: [...(config.guard.scopes ?? []), ...config.defaultToolScopes],
              counters: shared,
            })
        : undefined,
    })
    return {
      ...gateway,
      close: async () => {
        await gateway.close()
        await shared?.close()
      },
    }
  } catch (error) {
    await shared?.close()
    throw error
  }
}

/** The Redis of `shared_state`; an outage once started is logged at most every 10 s, not on every request. */
async function openShared(
  settings: NonNullable<GatewayConfig['sharedState']>,
  logger: Logger,
): Promise<SharedRedis> {
  let quietUntil = 0
  const onError = (error: Error) => {
    if (Date.now() < quietUntil) return
    quietUntil = Date.now() + 10_000
    logger.warn({ err: error.message }, 'shared state unreachable: session and DPoP checks answer 503')
  }
  try {
    return await openSharedRedis(settings.redisUrl, settings.keyPrefix, onError)
  } catch (error) {
    return failWith('redis_unreachable', (error as Error).message)
  }
}

/**
 * Opens the store and starts the authorization server for the canonical MCP URL, on its origin, issuing
 * tokens for that URL with `scopes` (the guard's, so the PRM, the audience and the server agree).
 */
export async function startEmbeddedAuthorizationServer(
  config: EmbeddedAuthorizationConfig,
  resource: { url: string; scopes: readonly string[] },
  options: {
    logger: AuthServerLogger
    proxy: boolean
    allowedOrigins?: readonly string[]
    everyone: readonly string[]
    /** Where the rate limits count, when not in the store (`shared_state`'s Redis). */
    counters?: Pick<Store, 'hit'> | undefined
  },
): Promise<EmbeddedAuthorization> {
  const { store, dataDir, close } = await openDataStore(config.storage, options.counters)
  try {
    const secret = config.storage.secret ?? (await loadSecret(dataDir, options.logger))
    const issuer = new URL(resource.url).origin
    const auth = await createAuthorizationServer({
      issuer,
      store,
      secret,
      resources: [{ url: resource.url, scopes: [...new Set(resource.scopes)], default: true }],
      ...(config.signingAlgorithm ? { signingAlgorithm: config.signingAlgorithm } : {}),
      ttl: config.ttl,
      ...(config.refreshReuseIntervalSeconds === undefined
        ? {}
        : { refreshReuseIntervalSeconds: config.refreshReuseIntervalSeconds }),
      ...(config.tokenRateLimit === undefined ? {} : { tokenRateLimit: config.tokenRateLimit }),
      clients: config.clients,
      tokenExchange: config.tokenExchange,
      ...(config.vault
        ? {
            vault: {
              connections: config.vault.connections,
              keys: await loadVaultKeys(config.vault, options.logger),
              refreshBeforeSeconds: config.vault.refreshBeforeSeconds,
            },
          }
        : {}),
      interactions: config.dev ? devInteractions : loginAndConsent(config.login),
      // The development test user holds every scope.
      ...(config.dev ? {} : { userScopes: { everyone: options.everyone, grants: config.scopeGrants } }),
      registration: config.registration,
      cimd: config.cimd,
      console: { admins: config.consoleAdmins },
      proxy: options.proxy,
      allowedOrigins: options.allowedOrigins ?? [],
      logger: options.logger,
    })
    for (const provider of config.dev ? [] : (config.login.identityProviders ?? [])) {
      options.logger.info('register this redirect URI at the identity provider', {
        provider: provider.id,
        redirect_uri: identityProviderRedirectUri(issuer, provider.id),
      })
    }
    options.logger.info(
      auth.console
        ? `admin console at ${issuer}/admin for ${config.consoleAdmins.length} administrator(s)`
        : 'admin console off: no authorization_server.console.admins',
    )
    for (const [id, connection] of auth.vault?.providers ?? []) {
      options.logger.info('register this redirect URI at the vault connection provider', {
        connection: id,
        redirect_uri: connection.redirectUri,
      })
    }
    return {
      auth,
      store,
      trusted: { issuer, jwks: async () => ({ keys: auth.publicJwks() }) },
      isRevoked: storeRevocationCheck(store, issuer),
      close: async () => {
        await auth.close()
        await close()
      },
    }
  } catch (error) {
    await close()
    throw error
  }
}

/** The token vault's keys, from the variable or the key file (warned unless 0600 or stricter); the newest first. */
export async function loadVaultKeys(settings: VaultSettings, logger?: AuthServerLogger): Promise<VaultKey[]> {
  if ('text' in settings.keys) return parseVaultKeys(settings.keys.text, 'GATEHOUSE_VAULT_KEYS')
  const { file } = settings.keys
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) =>
    failWith('vault_keys_unreadable', `cannot read the vault key file ${file}: ${error.message}`),
  )
  const mode = (await stat(file)).mode & 0o777
  if (mode & 0o077)
    logger?.warn(
      'the vault key file can be read by other users: anyone who reads it and the store has every connected token; chmod 600 it',
      {
        path: file,
        mode: mode.toString(8),
      },
    )
  return parseVaultKeys(text, file)
}

/**
 * Opens the store of `gatehouse serve` (the admin commands open the same one): the data directory is created
 * private (0700); in development mode it is temporary and removed by `close`.
 */
export async function openDataStore(settings: StorageSettings, counters?: Pick<Store, 'hit'>) {
  const dataDir = settings.dataDir ?? (await mkdtemp(join(tmpdir(), 'gatehouse-dev-')))
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const temporary = settings.dataDir === undefined
  let store: Store
  try {
    store = await openStore(settings.url, { dataDir, ...(counters ? { counters } : {}) })
  } catch (error) {
    if (temporary) await rm(dataDir, { recursive: true, force: true })
    return failWith('store_unavailable', `cannot open the store: ${(error as Error).message}`)
  }
  return {
    store,
    dataDir,
    close: async () => {
      await store.close()
      if (temporary) await rm(dataDir, { recursive: true, force: true })
    },
  }
}

/** The secret kept in `<data_dir>/secret`, or undefined when there is none yet. */
export async function readSecret(dataDir: string): Promise<string | undefined> {
  const path = join(dataDir, 'secret')
  const existing = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined
    return failWith('secret_unreadable', `cannot read the secret file ${path}: ${error.message}`)
  })
  return existing === undefined ? undefined : checkSecret(existing.trim(), path)
}

/** The secret kept in `<data_dir>/secret` (0600), generated on first start. */
export async function loadSecret(dataDir: string, logger: AuthServerLogger): Promise<string> {
  const existing = await readSecret(dataDir)
  if (existing !== undefined) return existing
  const path = join(dataDir, 'secret')
  const secret = randomBytes(32).toString('base64url')
  try {
    await writeFile(path, `${secret}\n`, { mode: 0o600, flag: 'wx' })
  } catch (error) {
    // Another instance sharing the directory wrote it first.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return loadSecret(dataDir, logger)
    throw error
  }
  logger.warn(
    'generated the authorization server secret: several instances sharing one store must share it too (GATEHOUSE_SECRET)',
    { path },
  )
  return secret
}
