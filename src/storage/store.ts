/**
 * The one storage interface of Gatehouse: `oidc-provider`'s adapter records and Gatehouse's own records
 * (users, consents, signing keys, audit events). Implemented by the embedded SQLite store (the default,
 * nothing to install) and by PostgreSQL (several instances sharing one database). Both pass the same
 * contract test. The schema is documented in docs/storage-schema.md.
 */
export interface Store {
  readonly kind: 'sqlite' | 'postgres'
  /** An `oidc-provider` adapter for one model (`AuthorizationCode`, `RefreshToken`, `Client`, …). */
  oidcAdapter(model: string): OidcAdapter
  /**
   * Deletes the `oidc-provider` records of an account's grants (grants, refresh tokens, codes), whatever
   * their model: with `clientId`, those of that client's grants; without, every record of the account,
   * its browser sessions included. Returns how many grants there were.
   */
  revokeAccountGrants(accountId: string, clientId?: string): Promise<number>
  /**
   * Deletes a registered client (its `Client` record) and the records of every grant made to it, whatever
   * the account (grants, refresh tokens, codes). Returns how many grants there were.
   */
  revokeClient(clientId: string): Promise<number>
  /** The unexpired `oidc-provider` records of one model (`Client`, `Grant`), for the admin commands. */
  listOidcRecords(model: string): Promise<OidcPayload[]>
  /**
   * `oidc-provider` writes in one transaction, in order, all or none: each `consume` is the compare-and-set
   * of {@link OidcAdapter.consume} (when it changes nothing, nothing is written and it throws
   * `OidcConsumeConflictError`), each `upsert` and `destroy` that of {@link OidcAdapter.upsert} and
   * {@link OidcAdapter.destroy}, each `audit` that of {@link AuditRecords.append}. A refresh token's rotation,
   * a code's redemption, the writes of one authorization request.
   */
  oidcTransaction(writes: readonly OidcWrite[]): Promise<void>
  readonly users: UserRecords
  readonly consents: ConsentRecords
  readonly keys: KeyRecords
  readonly audit: AuditRecords
  readonly revocations: RevocationRecords
  readonly clientUsage: ClientUsageRecords
  readonly connections: ConnectionRecords
  /**
   * Counts an event in a fixed window and says whether it is still within `limit`; shared by every
   * instance using the store (rate limits on sign-in, registration, CIMD fetches).
   */
  hit(bucket: string, limit: number, windowSeconds: number): Promise<boolean>
  close(): Promise<void>
}

/** `oidc-provider`'s adapter contract, with `consume` made atomic. */
export interface OidcAdapter {
  upsert(id: string, payload: OidcPayload, expiresIn: number): Promise<void>
  find(id: string): Promise<OidcPayload | undefined>
  /**
   * `find`, and in the same read the grant the record names (`grantId`) and the user it belongs to
   * (`accountId`): what a token request reads next. Each is undefined when absent (or expired, for the grant).
   * With `count`, also {@link Store.hit} (in the same statement where the database allows: one round trip).
   */
  findWithGrant(id: string, count?: RateLimitHit): Promise<GrantSourceRead>
  findByUid(uid: string): Promise<OidcPayload | undefined>
  findByUserCode(userCode: string): Promise<OidcPayload | undefined>
  /**
   * Marks the record consumed. A compare-and-set: when it was already consumed (a concurrent redemption
   * of the same code or refresh token won), it throws, so exactly one of the racers succeeds.
   */
  consume(id: string): Promise<void>
  destroy(id: string): Promise<void>
  revokeByGrantId(grantId: string): Promise<void>
}

export interface OidcRecordWithGrant {
  record: OidcPayload
  grant: OidcPayload | undefined
  user: User | undefined
}

/** The arguments of {@link Store.hit}. */
export interface RateLimitHit {
  bucket: string
  limit: number
  windowSeconds: number
}

export interface GrantSourceRead {
  found: OidcRecordWithGrant | undefined
  /** What {@link Store.hit} answered for the count made with the read; true when none was asked. */
  withinLimit: boolean
}

/** An `audit` write appends the event in the same transaction (what the writes did, recorded with them). */
export type OidcWrite =
  | { kind: 'consume'; model: string; id: string }
  | { kind: 'upsert'; model: string; id: string; payload: OidcPayload; expiresIn: number }
  | { kind: 'destroy'; model: string; id: string }
  | { kind: 'audit'; event: AuditEvent }

export type OidcPayload = Record<string, unknown> & {
  grantId?: string
  uid?: string
  userCode?: string
  consumed?: number
}

export interface User {
  id: string
  username: string
  /** scrypt hash in PHC-like form; absent for users who only sign in through an upstream provider. */
  passwordHash: string | undefined
  /** `<upstream issuer>|<upstream sub>` for federated users. */
  externalId: string | undefined
  claims: Record<string, unknown>
  createdAt: number
  /** When an administrator disabled the account; a disabled account signs in to nothing and holds no token. */
  disabledAt: number | undefined
}

/**
 * The one rule for usernames, on write and on lookup: surrounding whitespace removed, A-Z folded to a-z
 * (ASCII only, so the databases fold exactly the same way). Local names are `a-z 0-9 . _ -`; federated ones
 * are `<provider id>:<subject>`, and upstream subjects (Okta's `00uAbC…`) have capitals.
 */
export function normalizeUsername(username: string): string {
  return username.trim().replace(/[A-Z]+/g, (letters) => letters.toLowerCase())
}

/** Two stored usernames fold to the one asked for (rows older than the rule): refused rather than guessed. */
export class AmbiguousUsernameError extends Error {}

export interface UserRecords {
  /** Stores the username normalized; throws when a user already has that name, in any case. */
  create(user: Omit<User, 'id' | 'createdAt' | 'disabledAt'>): Promise<User>
  findById(id: string): Promise<User | undefined>
  /** By {@link normalizeUsername}; throws {@link AmbiguousUsernameError} when two users match. */
  findByUsername(username: string): Promise<User | undefined>
  findByExternalId(externalId: string): Promise<User | undefined>
  list(): Promise<User[]>
  /** Each returns false when there is no user `id`. */
  setPassword(id: string, passwordHash: string): Promise<boolean>
  /** Disables the account (now) or enables it again. */
  setDisabled(id: string, disabled: boolean): Promise<boolean>
  /** Deletes the account and its consents. */
  delete(id: string): Promise<boolean>
}

export interface Consent {
  userId: string
  clientId: string
  /** Scopes granted per resource. */
  resources: Record<string, string[]>
  grantedAt: number
}

export interface ConsentRecords {
  find(userId: string, clientId: string): Promise<Consent | undefined>
  save(consent: Consent): Promise<void>
  revoke(userId: string, clientId: string): Promise<boolean>
  listByUser(userId: string): Promise<Consent[]>
  /** Forgets every user's consent to `clientId`; returns how many there were. */
  revokeClient(clientId: string): Promise<number>
}

/**
 * Access tokens the gateway must refuse although they verify: JWTs cannot be recalled, so revoking a
 * user's grants also lists them here until every token issued before could have expired.
 */
export interface RevocationRecords {
  /**
   * Refuses the tokens of `subject` issued at or before now: those of `clientId`, or of every client when
   * it is undefined. The entry is kept `keepSeconds`.
   */
  add(subject: string, clientId: string | undefined, keepSeconds: number): Promise<void>
  /** Refuses the tokens of `clientId` issued at or before now, whatever their subject. */
  addClient(clientId: string, keepSeconds: number): Promise<void>
  /** The latest revocation time that applies to a token of `subject` for `clientId`, if any. */
  revokedAt(subject: string, clientId: string | undefined): Promise<number | undefined>
}

export interface SigningKey {
  kid: string
  alg: string
  /** The private JWK, encrypted at rest (AES-256-GCM); never stored in clear. */
  encryptedJwk: string
  /** `active` signs; `retired` is still published until `retireAfter` so its tokens keep verifying. */
  state: 'active' | 'retired'
  createdAt: number
  retireAfter: number | undefined
}

export interface KeyRecords {
  list(): Promise<SigningKey[]>
  insert(key: SigningKey): Promise<void>
  /** Makes `kid` the only active key; the previous active keys become retired until `retireAfter`. */
  activate(kid: string, retireAfter: number): Promise<void>
  /**
   * Keeps a retired key published at least until `until` (never shortened; an active key is untouched): an
   * instance still signing with a key that another instance rotated out keeps its tokens verifiable.
   */
  retain(kid: string, until: number): Promise<void>
  deleteExpired(now: number): Promise<number>
}

export interface AuditEvent {
  at: number
  type: string
  /** Never a token, secret or password. */
  data: Record<string, unknown>
}

export interface AuditRecords {
  append(event: AuditEvent): Promise<void>
  recent(limit: number): Promise<AuditEvent[]>
  /** Deletes the events before `before`, then all but the newest `keep`; returns how many went. */
  prune(before: number, keep: number): Promise<number>
}

/** When each client last obtained a token: written at most every few minutes per client (the caller throttles). */
export interface ClientUsageRecords {
  /** Records a use at `at`; an earlier time never replaces a later one. */
  touch(clientId: string, at: number): Promise<void>
  /** The last use of every client that has one, by client_id. */
  list(): Promise<Map<string, number>>
}

/**
 * A user's account at a third-party OAuth provider, connected through the token vault. The tokens are sealed
 * by the vault (AES-256-GCM, `keyId` names the key); the store never sees them in clear.
 */
export interface VaultConnection {
  userId: string
  /** The connection's id in the configuration (`github`). */
  connectionId: string
  /** The sealed tokens (access and refresh token). */
  sealed: string
  /** The encryption key that sealed them. */
  keyId: string
  /** When the access token expires (seconds since the epoch), when the provider said. */
  expiresAt: number | undefined
  scope: string | undefined
  /** `broken`: the provider refused the refresh token (`invalid_grant`); the user must connect again. */
  status: 'active' | 'broken'
  /** Raised by every write: {@link ConnectionRecords.update} is a compare-and-set on it. */
  version: number
  /** An instance refreshing the tokens holds the row until then (seconds); others wait for its result. */
  leaseUntil: number | undefined
  createdAt: number
  updatedAt: number
}

export type ConnectionChanges = Partial<
  Pick<VaultConnection, 'sealed' | 'keyId' | 'expiresAt' | 'scope' | 'status' | 'leaseUntil'>
>

export interface ConnectionRecords {
  find(userId: string, connectionId: string): Promise<VaultConnection | undefined>
  listByUser(userId: string): Promise<VaultConnection[]>
  /** Every user's, for the admin commands (`connectionId` alone: one connection's). */
  list(connectionId?: string): Promise<VaultConnection[]>
  /** A new connection, or a reconnect replacing the row (active again, lease cleared, version raised). */
  save(
    connection: Pick<VaultConnection, 'userId' | 'connectionId' | 'sealed' | 'keyId' | 'expiresAt' | 'scope'>,
  ): Promise<VaultConnection>
  /**
   * Writes `changes` only if the row is still at `version` (no other instance or request wrote since it was
   * read), raising the version; returns the new row, or undefined when it changed or is gone.
   */
  update(
    userId: string,
    connectionId: string,
    version: number,
    changes: ConnectionChanges,
  ): Promise<VaultConnection | undefined>
  delete(userId: string, connectionId: string): Promise<boolean>
}
