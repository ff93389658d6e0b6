import { setTimeout as sleep } from 'node:timers/promises'
import type { Store, VaultConnection } from '../../storage/store.ts'
import { type AuditType, recordAudit } from '../audit.ts'
import type { AuthServerLogger } from '../options.ts'
import { VaultCipher, type VaultKey } from './cipher.ts'
import {
  ConnectionProvider,
  checkVaultConnections,
  ProviderUnavailable,
  RefreshRefused,
  type VaultConnectionOptions,
  type VaultTokens,
} from './provider.ts'

export interface TokenVaultOptions {
  connections: readonly VaultConnectionOptions[]
  /** The newest first: it seals, every key opens. */
  keys: readonly VaultKey[]
  /** An access token expiring within this is refreshed before use. Default 60 s. */
  refreshBeforeSeconds?: number
}

/**
 * What a caller gets for one user and connection: the access token and the header the connection declares for
 * it, or why there is none and where the user connects the account.
 */
export type VaultAnswer =
  | { ok: true; accessToken: string; header: { name: string; value: string } }
  | {
      ok: false
      reason: 'not_connected' | 'broken' | 'unavailable'
      connectUrl: string
      name: string
      /** With `unavailable` after the provider failed: seconds until the vault asks it again. */
      retryAfterSeconds?: number
    }

/** A refresh holds the row this long (seconds): longer than the provider's timeout, so it ends first. */
const LEASE_SECONDS = 30
const WAIT_STEP_MS = 100
const seconds = () => Math.floor(Date.now() / 1000)
const stillValid = (row: VaultConnection) => row.expiresAt !== undefined && row.expiresAt > seconds()

/**
 * The token vault: each user's tokens at third-party providers, sealed in the store (AES-256-GCM), refreshed
 * before they expire. One refresh per connection at a time: in this process the callers share one promise;
 * across instances a lease taken by compare-and-set on the row's version, so the provider sees one refresh
 * token used once and a rotated one is never lost. `invalid_grant` marks the connection broken: it is not
 * retried, the user connects again. A provider that is down is asked again only after a growing pause.
 */
export class TokenVault {
  readonly #store: Store
  readonly #logger: AuthServerLogger
  readonly #cipher: VaultCipher
  readonly #providers: ReadonlyMap<string, ConnectionProvider>
  readonly #refreshBefore: number
  readonly #connectBase: string
  readonly #inFlight = new Map<string, Promise<VaultAnswer>>()

  constructor(
    store: Store,
    logger: AuthServerLogger,
    base: { issuer: string; interactionPath: string },
    options: TokenVaultOptions,
  ) {
    checkVaultConnections(options.connections)
    this.#store = store
    this.#logger = logger
    this.#cipher = new VaultCipher(options.keys)
    this.#refreshBefore = options.refreshBeforeSeconds ?? 60
    this.#connectBase = `${new URL(base.issuer).origin}${base.interactionPath}`
    this.#providers = new Map(
      options.connections.map((connection) => [
        connection.id,
        new ConnectionProvider(connection, `${this.#connectBase}connected/${connection.id}`),
      ]),
    )
  }

  get providers(): ReadonlyMap<string, ConnectionProvider> {
    return this.#providers
  }

  /** The page a user opens to connect `connectionId`. */
  connectUrl(connectionId: string): string {
    return `${this.#connectBase}connect/${connectionId}`
  }

  /**
   * `userId`'s token for `connectionId` and its header, refreshed first when it is about to expire. The gateway's
   * `vault` mode calls it per request; a server embedding the authorization server calls it for its own API calls.
   */
  async header(userId: string, connectionId: string): Promise<VaultAnswer> {
    const provider = this.#provider(connectionId)
    const row = await this.#store.connections.find(userId, connectionId)
    if (!row || row.status === 'broken') return this.#missing(provider, row ? 'broken' : 'not_connected')
    if (this.#fresh(row)) return this.#answer(provider, this.#open(row).accessToken)
    const key = `${userId}\0${connectionId}`
    let flight = this.#inFlight.get(key)
    if (!flight) {
      flight = this.#refresh(provider, userId).finally(() => this.#inFlight.delete(key))
      this.#inFlight.set(key, flight)
    }
    return flight
  }

  /** Stores the tokens of a connection just made (or made again). */
  async connect(userId: string, connectionId: string, tokens: VaultTokens): Promise<void> {
    const row = rowName(userId, connectionId)
    await this.#store.connections.save({
      userId,
      connectionId,
      ...this.#cipher.seal(JSON.stringify(tokens), row),
      expiresAt: tokens.expiresAt,
      scope: tokens.scope,
    })
    await this.#audit('vault.connected', { userId, connection: connectionId })
  }

  /**
   * Revokes the tokens at the provider (refresh token first: most providers end the access tokens with it),
   * then forgets them. A provider that cannot be reached does not keep the row: the user asked to forget it.
   * `by` names the administrator who did it for the user (the console), in the audit event.
   */
  async disconnect(
    userId: string,
    connectionId: string,
    by?: string,
  ): Promise<{ found: boolean; revoked: boolean }> {
    const row = await this.#store.connections.find(userId, connectionId)
    if (!row) return { found: false, revoked: false }
    let revoked = false
    const provider = this.#providers.get(connectionId)
    if (provider) {
      try {
        const tokens = this.#open(row)
        if (tokens.refreshToken) await provider.revoke(tokens.refreshToken, 'refresh_token')
        await provider.revoke(tokens.accessToken, 'access_token')
        revoked = (await provider.configuration()).serverMetadata().revocation_endpoint !== undefined
      } catch (error) {
        this.#logger.warn('vault revocation at the provider failed', {
          connection: connectionId,
          error: (error as Error).message,
        })
      }
    }
    const found = await this.#store.connections.delete(userId, connectionId)
    await this.#audit('vault.disconnected', {
      userId,
      connection: connectionId,
      revoked,
      ...(by ? { by } : {}),
    })
    return { found, revoked }
  }

  /**
   * Re-seals every row not sealed with the newest key; returns how many. Each row is written by
   * compare-and-set, so a refresh racing with it wins and the row is left for the next run.
   */
  async rekey(): Promise<{ resealed: number; skipped: number }> {
    let resealed = 0
    let skipped = 0
    for (const row of await this.#store.connections.list()) {
      if (row.keyId === this.#cipher.current) continue
      const clear = this.#cipher.open(row.sealed, row.keyId, rowName(row.userId, row.connectionId))
      const sealed = this.#cipher.seal(clear, rowName(row.userId, row.connectionId))
      const written = await this.#store.connections.update(row.userId, row.connectionId, row.version, sealed)
      if (written) resealed += 1
      else skipped += 1
    }
    return { resealed, skipped }
  }

  #provider(connectionId: string): ConnectionProvider {
    const provider = this.#providers.get(connectionId)
    if (!provider) throw new TypeError(`no vault connection ${JSON.stringify(connectionId)} is configured`)
    return provider
  }

  #fresh(row: VaultConnection): boolean {
    return row.expiresAt === undefined || row.expiresAt - seconds() > this.#refreshBefore
  }

  #open(row: VaultConnection): VaultTokens {
    return JSON.parse(
      this.#cipher.open(row.sealed, row.keyId, rowName(row.userId, row.connectionId)),
    ) as VaultTokens
  }

  #answer(provider: ConnectionProvider, accessToken: string): VaultAnswer {
    return { ok: true, accessToken, header: provider.header(accessToken) }
  }

  #missing(
    provider: ConnectionProvider,
    reason: 'not_connected' | 'broken' | 'unavailable',
    retryAfterSeconds?: number,
  ): VaultAnswer {
    return {
      ok: false,
      reason,
      connectUrl: this.connectUrl(provider.options.id),
      name: provider.options.name,
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
    }
  }

  /** A row the provider did not refresh: its token while still valid, else unavailable. */
  #unrefreshed(provider: ConnectionProvider, row: VaultConnection, retryAfterSeconds?: number): VaultAnswer {
    return stillValid(row)
      ? this.#answer(provider, this.#open(row).accessToken)
      : this.#missing(provider, 'unavailable', retryAfterSeconds)
  }

  /**
   * Takes the row's lease and refreshes, or waits for the instance holding it and uses its result. The
   * provider is asked only by the holder of the lease, and only the holder's version can be written back.
   */
  async #refresh(provider: ConnectionProvider, userId: string): Promise<VaultAnswer> {
    const connectionId = provider.options.id
    const deadline = Date.now() + (LEASE_SECONDS + 5) * 1000
    while (Date.now() < deadline) {
      const row = await this.#store.connections.find(userId, connectionId)
      if (!row || row.status === 'broken') return this.#missing(provider, row ? 'broken' : 'not_connected')
      if (this.#fresh(row)) return this.#answer(provider, this.#open(row).accessToken)
      // The provider failed lately: refused at once, neither the lease nor the provider is asked.
      const paused = provider.pausedSeconds()
      if (paused > 0) return this.#unrefreshed(provider, row, paused)
      if ((row.leaseUntil ?? 0) > seconds()) {
        await sleep(WAIT_STEP_MS)
        continue
      }
      const held = await this.#store.connections.update(userId, connectionId, row.version, {
        leaseUntil: seconds() + LEASE_SECONDS,
      })
      if (held) return this.#refreshHeld(provider, held)
    }
    return this.#missing(provider, 'unavailable')
  }

  async #refreshHeld(provider: ConnectionProvider, held: VaultConnection): Promise<VaultAnswer> {
    const { userId, connectionId } = held
    const tokens = this.#open(held)
    const release = (changes = {}) =>
      this.#store.connections.update(userId, connectionId, held.version, {
        leaseUntil: undefined,
        ...changes,
      })
    if (!tokens.refreshToken) {
      if (stillValid(held)) {
        await release()
        return this.#answer(provider, tokens.accessToken)
      }
      await release({ status: 'broken' })
      await this.#audit('vault.broken', {
        userId,
        connection: connectionId,
        reason: 'expired, no refresh token',
      })
      return this.#missing(provider, 'broken')
    }
    let next: VaultTokens
    try {
      next = await provider.refresh(tokens.refreshToken)
    } catch (error) {
      if (error instanceof RefreshRefused) {
        await release({ status: 'broken' })
        await this.#audit('vault.broken', { userId, connection: connectionId, reason: 'invalid_grant' })
        return this.#missing(provider, 'broken')
      }
      this.#logger.warn('vault refresh failed', { connection: connectionId, error: (error as Error).message })
      await release()
      return this.#unrefreshed(
        provider,
        held,
        error instanceof ProviderUnavailable ? error.retryAfterSeconds : undefined,
      )
    }
    // The new refresh token (rotated or not) and the access token go in one compare-and-set write.
    const written = await release({
      ...this.#cipher.seal(JSON.stringify(next), rowName(userId, connectionId)),
      expiresAt: next.expiresAt,
      scope: next.scope ?? held.scope,
    })
    if (!written)
      this.#logger.warn('vault refresh result not stored: the row changed during the refresh', {
        connection: connectionId,
      })
    return this.#answer(provider, next.accessToken)
  }

  #audit(type: AuditType, data: Record<string, unknown>) {
    return recordAudit(this.#store, type, data)
  }
}

/** The associated data of a row's ciphertext (never change it: stored rows would not open), also its name in errors. */
const rowName = (userId: string, connectionId: string) => `vault row ${connectionId} of user ${userId}`
