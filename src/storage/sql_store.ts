import { createHash, randomUUID } from 'node:crypto'
import { POSTGRES_DIALECT, SQLITE_DIALECT } from './migrations.ts'
import {
  AmbiguousUsernameError,
  type AuditEvent,
  type AuditRecords,
  type ClientUsageRecords,
  type ConnectionChanges,
  type ConnectionRecords,
  type Consent,
  type ConsentRecords,
  type KeyRecords,
  normalizeUsername,
  type OidcAdapter,
  type OidcPayload,
  type OidcWrite,
  type RevocationRecords,
  type SigningKey,
  type Store,
  type User,
  type UserRecords,
  type VaultConnection,
} from './store.ts'

export type SqlValue = string | number | null
export type Row = Record<string, unknown>

export interface SqlStatement {
  sql: string
  params: SqlValue[]
  /**
   * When the statement changes no row, the transaction is rolled back and this error thrown. Made only then:
   * an Error captures its stack when built, which cost every consume (each code and refresh) a few µs.
   */
  orFail?: () => Error
}

/** What the store needs from a database: SQL with `?` placeholders, run by SQLite or PostgreSQL. */
export interface SqlDriver {
  readonly kind: Store['kind']
  query(sql: string, params: SqlValue[]): Promise<Row[]>
  /** Returns the number of rows changed. */
  execute(sql: string, params: SqlValue[]): Promise<number>
  transaction(statements: SqlStatement[]): Promise<void>
  /**
   * `transaction` for statements that each change rows none of the others touch (so their order does not
   * matter), in one round trip. Absent where a transaction costs no round trip (SQLite).
   */
  transactionOfDistinctRows?(statements: SqlStatement[]): Promise<void>
  close(): Promise<void>
}

export interface StoreOptions {
  /** Milliseconds since the epoch; tests move it to cross expiries and rate-limit windows. */
  now?: () => number
  /**
   * Where `hit` counts instead of the database: Redis (`shared_state`) when configured, so that rate limits
   * cost no database write; the counters are the same for every instance either way.
   */
  counters?: Pick<Store, 'hit'>
}

/** Thrown by `consume` when the record was already consumed, has expired or does not exist. */
export class OidcConsumeConflictError extends Error {
  constructor(model: string) {
    super(`${model} record already consumed, expired or not found`)
    this.name = 'OidcConsumeConflictError'
  }
}

/**
 * Thrown by the drivers when the database cannot be reached or refuses work for now (connection refused or
 * lost, server shutting down or starting, too many connections, a lock held past the timeout): the caller
 * answers "retry later" instead of a server error.
 */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`storage unavailable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    this.name = 'StoreUnavailableError'
  }
}

const PURGE_INTERVAL_SECONDS = 60

/**
 * Lookup keys of `oidc-provider` records (token values, grant ids, session uids, user codes) are stored as
 * SHA-256 digests: any length and any character fits an index, and PostgreSQL text cannot hold NUL.
 * JSON.stringify first, so distinct lone surrogates (which UTF-8 would all turn into U+FFFD) stay distinct.
 */
function lookupKey(value: string): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex')
}

function optionalLookupKey(value: unknown): string | null {
  return typeof value === 'string' ? lookupKey(value) : null
}

/** The `token_revocations` key of a client or subject; `*` (never a digest) stands for every one. */
function clientKey(clientId: string | undefined): string {
  return clientId === undefined ? '*' : lookupKey(clientId)
}

/** PostgreSQL text cannot hold NUL; refused on both backends so they behave the same. */
function storable(value: string): boolean {
  return !value.includes('\0')
}

function text(field: string, value: string): string {
  if (!storable(value)) throw new Error(`storage: ${field} contains a NUL character`)
  return value
}

function optionalText(field: string, value: string | undefined): string | null {
  return value === undefined ? null : text(field, value)
}

/** PostgreSQL returns BIGINT columns as strings. */
function integer(value: unknown): number {
  return Number(value)
}

function optionalInteger(value: unknown): number | undefined {
  return value === null || value === undefined ? undefined : Number(value)
}

function optionalString(value: unknown): string | undefined {
  return value === null || value === undefined ? undefined : String(value)
}

function toUser(row: Row): User {
  return {
    id: String(row.id),
    username: String(row.username),
    passwordHash: optionalString(row.password_hash),
    externalId: optionalString(row.external_id),
    claims: JSON.parse(String(row.claims)),
    createdAt: integer(row.created_at),
    disabledAt: optionalInteger(row.disabled_at),
  }
}

const USER_COLUMNS = ['id', 'username', 'password_hash', 'external_id', 'claims', 'created_at', 'disabled_at']
/** The `users` columns of a join on `users u`, each as `user_<column>`. */
const JOINED_USER_COLUMNS = USER_COLUMNS.map((column) => `u.${column} AS user_${column}`).join(', ')

/** The user of a joined row, whose `users` columns are named `user_<column>`; undefined when none joined. */
function toJoinedUser(row: Row): User | undefined {
  if (row.user_id === null || row.user_id === undefined) return undefined
  return toUser(Object.fromEntries(USER_COLUMNS.map((column) => [column, row[`user_${column}`]])))
}

function toConsent(row: Row): Consent {
  return {
    userId: String(row.user_id),
    clientId: String(row.client_id),
    resources: JSON.parse(String(row.resources)),
    grantedAt: integer(row.granted_at),
  }
}

function toConnection(row: Row): VaultConnection {
  return {
    userId: String(row.user_id),
    connectionId: String(row.connection_id),
    sealed: String(row.sealed),
    keyId: String(row.key_id),
    expiresAt: optionalInteger(row.expires_at),
    scope: optionalString(row.scope),
    status: row.status === 'broken' ? 'broken' : 'active',
    version: integer(row.version),
    leaseUntil: optionalInteger(row.lease_until),
    createdAt: integer(row.created_at),
    updatedAt: integer(row.updated_at),
  }
}

/** The columns of {@link ConnectionChanges}, in a fixed order. */
const CONNECTION_COLUMNS: Record<keyof ConnectionChanges, string> = {
  sealed: 'sealed',
  keyId: 'key_id',
  expiresAt: 'expires_at',
  scope: 'scope',
  status: 'status',
  leaseUntil: 'lease_until',
}

function toSigningKey(row: Row): SigningKey {
  return {
    kid: String(row.kid),
    alg: String(row.alg),
    encryptedJwk: String(row.encrypted_jwk),
    state: row.state === 'active' ? 'active' : 'retired',
    createdAt: integer(row.created_at),
    retireAfter: optionalInteger(row.retire_after),
  }
}

/** A row's `payload`, with `consumed` set from `consumed_at`. */
function toOidcPayload(row: Row): OidcPayload {
  const payload: OidcPayload = JSON.parse(String(row.payload))
  const consumed = optionalInteger(row.consumed_at)
  if (consumed !== undefined) payload.consumed = consumed
  return payload
}

/** `OidcAdapter.upsert`: replaces the whole row; `consumed_at` follows `payload.consumed`. */
function upsertStatement(
  model: string,
  id: string,
  payload: OidcPayload,
  expiresIn: number,
  now: number,
): SqlStatement {
  return {
    sql: `INSERT INTO oidc_records
            (model, id, payload, grant_id, uid, user_code, account_id, expires_at, consumed_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
            uid = excluded.uid, user_code = excluded.user_code, account_id = excluded.account_id,
            expires_at = excluded.expires_at, consumed_at = excluded.consumed_at`,
    params: [
      model,
      lookupKey(id),
      JSON.stringify(payload),
      optionalLookupKey(payload.grantId),
      optionalLookupKey(payload.uid),
      optionalLookupKey(payload.userCode),
      typeof payload.accountId === 'string' && storable(payload.accountId) ? payload.accountId : null,
      // Clients registered without an expiry come with no expiresIn.
      Number.isFinite(expiresIn) ? now + expiresIn : null,
      typeof payload.consumed === 'number' ? payload.consumed : null,
    ],
  }
}

function destroyStatement(model: string, id: string): SqlStatement {
  return { sql: 'DELETE FROM oidc_records WHERE model = ? AND id = ?', params: [model, lookupKey(id)] }
}

/** `OidcAdapter.consume`: a compare-and-set that changes no row when the record is consumed, expired or absent. */
function consumeStatement(model: string, id: string, now: number): SqlStatement {
  return {
    sql: `UPDATE oidc_records SET consumed_at = ?
          WHERE model = ? AND id = ? AND consumed_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`,
    params: [now, model, lookupKey(id), now],
    orFail: () => new OidcConsumeConflictError(model),
  }
}

/** `Store.hit`: the count of the bucket's current window, one more. */
const HIT_SQL = `INSERT INTO rate_limits (bucket, window_start, count, expires_at) VALUES (?, ?, 1, ?)
  ON CONFLICT (bucket, window_start) DO UPDATE SET count = rate_limits.count + 1
  RETURNING count`

function hitParams(bucket: string, windowSeconds: number, now: number): SqlValue[] {
  const windowStart = now - (now % windowSeconds)
  return [lookupKey(bucket), windowStart, windowStart + windowSeconds]
}

function auditStatement(event: AuditEvent): SqlStatement {
  return {
    sql: 'INSERT INTO audit_events (at, type, data) VALUES (?, ?, ?)',
    params: [event.at, text('type', event.type), JSON.stringify(event.data)],
  }
}

/** The grants `rows` belong to, those of `clientId` only when given. */
function grantIds(rows: Row[], clientId: string | undefined): Set<string> {
  const grants = new Set<string>()
  for (const row of rows) {
    const payload: OidcPayload = JSON.parse(String(row.payload))
    if (clientId !== undefined && payload.clientId !== clientId) continue
    // A grant's own id is its jti; every other record names its grant.
    const grantId = row.model === 'Grant' ? payload.jti : payload.grantId
    if (typeof grantId === 'string') grants.add(grantId)
  }
  return grants
}

/** Deletes every record of these grants, the grants included. */
function grantDeletions(grants: Set<string>): SqlStatement[] {
  return [...grants].flatMap((grantId) => [
    { sql: 'DELETE FROM oidc_records WHERE grant_id = ?', params: [lookupKey(grantId)] },
    { sql: `DELETE FROM oidc_records WHERE model = 'Grant' AND id = ?`, params: [lookupKey(grantId)] },
  ])
}

/** The one implementation of `Store`; the backends differ only in their `SqlDriver` and DDL. */
export class SqlStore implements Store {
  readonly kind: Store['kind']
  readonly users: UserRecords
  readonly consents: ConsentRecords
  readonly keys: KeyRecords
  readonly audit: AuditRecords
  readonly revocations: RevocationRecords
  readonly clientUsage: ClientUsageRecords
  readonly connections: ConnectionRecords
  readonly #db: SqlDriver
  readonly #now: () => number
  readonly #counters: StoreOptions['counters']
  #nextPurge = 0

  constructor(db: SqlDriver, options: StoreOptions = {}) {
    this.#db = db
    this.kind = db.kind
    this.#now = options.now ?? Date.now
    this.#counters = options.counters
    this.users = this.#userRecords()
    this.consents = this.#consentRecords()
    this.keys = this.#keyRecords()
    this.audit = this.#auditRecords()
    this.revocations = this.#revocationRecords()
    this.clientUsage = this.#clientUsageRecords()
    this.connections = this.#connectionRecords()
  }

  #seconds(): number {
    return Math.floor(this.#now() / 1000)
  }

  /** Expired rows are never returned; deleting them is housekeeping, done at most once a minute. */
  async #purgeExpired(now: number): Promise<void> {
    if (now < this.#nextPurge) return
    this.#nextPurge = now + PURGE_INTERVAL_SECONDS
    await this.#db.execute('DELETE FROM oidc_records WHERE expires_at <= ?', [now])
    await this.#db.execute('DELETE FROM rate_limits WHERE expires_at <= ?', [now])
    await this.#db.execute('DELETE FROM token_revocations WHERE expires_at <= ?', [now])
  }

  oidcAdapter(model: string): OidcAdapter {
    const db = this.#db
    const seconds = () => this.#seconds()
    const purgeExpired = (now: number) => this.#purgeExpired(now)
    const hit = (bucket: string, limit: number, windowSeconds: number) =>
      this.hit(bucket, limit, windowSeconds)
    const counted = this.#counters !== undefined
    const findBy = async (column: 'id' | 'uid' | 'user_code', value: string) => {
      const [row] = await db.query(
        `SELECT payload, consumed_at FROM oidc_records
         WHERE model = ? AND ${column} = ? AND (expires_at IS NULL OR expires_at > ?)`,
        [model, lookupKey(value), seconds()],
      )
      return row ? toOidcPayload(row) : undefined
    }
    return {
      async upsert(id, payload, expiresIn) {
        const now = seconds()
        await purgeExpired(now)
        const { sql, params } = upsertStatement(model, id, payload, expiresIn, now)
        await db.execute(sql, params)
      },
      find: (id) => findBy('id', id),
      async findWithGrant(id, count) {
        const now = seconds()
        // PostgreSQL counts in the read (an INSERT in WITH); SQLite has no such statement, and its statements
        // cost no round trip; Redis counters are elsewhere.
        const folded = count !== undefined && db.kind === 'postgres' && !counted
        const withinLimit =
          count === undefined || folded ? true : await hit(count.bucket, count.limit, count.windowSeconds)
        if (folded) await purgeExpired(now)
        // One row whether or not the record exists (the count's). The grant's id and the record's grant_id
        // are the same digest; account_id is a user's id.
        const [row] = await db.query(
          `${folded ? `WITH hit AS (${HIT_SQL}) SELECT hit.count AS hits,` : 'SELECT'}
             r.payload, r.consumed_at, g.payload AS grant_payload, ${JOINED_USER_COLUMNS}
           FROM ${folded ? 'hit' : '(SELECT 1) AS one'}
           LEFT JOIN oidc_records r ON r.model = ? AND r.id = ? AND (r.expires_at IS NULL OR r.expires_at > ?)
           LEFT JOIN oidc_records g ON g.model = 'Grant' AND g.id = r.grant_id
             AND (g.expires_at IS NULL OR g.expires_at > ?)
           LEFT JOIN users u ON u.id = r.account_id`,
          [
            ...(folded ? hitParams(count.bucket, count.windowSeconds, now) : []),
            model,
            lookupKey(id),
            now,
            now,
          ],
        )
        return {
          withinLimit: folded ? integer(row?.hits) <= count.limit : withinLimit,
          found:
            row?.payload === null || row?.payload === undefined
              ? undefined
              : {
                  record: toOidcPayload(row),
                  grant: row.grant_payload === null ? undefined : JSON.parse(String(row.grant_payload)),
                  user: toJoinedUser(row),
                },
        }
      },
      findByUid: (uid) => findBy('uid', uid),
      findByUserCode: (userCode) => findBy('user_code', userCode),
      async consume(id) {
        const { sql, params, orFail } = consumeStatement(model, id, seconds())
        if ((await db.execute(sql, params)) === 0) throw orFail?.()
      },
      async destroy(id) {
        const { sql, params } = destroyStatement(model, id)
        await db.execute(sql, params)
      },
      async revokeByGrantId(grantId) {
        await db.execute('DELETE FROM oidc_records WHERE grant_id = ?', [lookupKey(grantId)])
      },
    }
  }

  async revokeAccountGrants(accountId: string, clientId?: string): Promise<number> {
    if (!storable(accountId)) return 0
    const rows = await this.#db.query('SELECT model, payload FROM oidc_records WHERE account_id = ?', [
      accountId,
    ])
    const grants = grantIds(rows, clientId)
    const statements = grantDeletions(grants)
    if (clientId === undefined)
      statements.push({ sql: 'DELETE FROM oidc_records WHERE account_id = ?', params: [accountId] })
    if (statements.length > 0) await this.#db.transaction(statements)
    return grants.size
  }

  async revokeClient(clientId: string): Promise<number> {
    // Every record of a grant names its account; the client is only in the payload.
    const rows = await this.#db.query(
      'SELECT model, payload FROM oidc_records WHERE account_id IS NOT NULL',
      [],
    )
    const grants = grantIds(rows, clientId)
    await this.#db.transaction([
      ...grantDeletions(grants),
      { sql: `DELETE FROM oidc_records WHERE model = 'Client' AND id = ?`, params: [lookupKey(clientId)] },
    ])
    return grants.size
  }

  async listOidcRecords(model: string): Promise<OidcPayload[]> {
    const rows = await this.#db.query(
      'SELECT payload FROM oidc_records WHERE model = ? AND (expires_at IS NULL OR expires_at > ?)',
      [model, this.#seconds()],
    )
    return rows.map((row) => JSON.parse(String(row.payload)))
  }

  async oidcTransaction(writes: readonly OidcWrite[]): Promise<void> {
    const now = this.#seconds()
    await this.#purgeExpired(now)
    const statements = writes.map((write) => {
      if (write.kind === 'consume') return consumeStatement(write.model, write.id, now)
      if (write.kind === 'upsert')
        return upsertStatement(write.model, write.id, write.payload, write.expiresIn, now)
      if (write.kind === 'destroy') return destroyStatement(write.model, write.id)
      return auditStatement(write.event)
    })
    // A model and id each (a rotation: the old token, the new one, the link between them); each audit
    // event is a row of its own.
    const rows = writes.flatMap((write) => (write.kind === 'audit' ? [] : [`${write.model}\0${write.id}`]))
    const distinct = new Set(rows).size === rows.length
    if (distinct && this.#db.transactionOfDistinctRows) await this.#db.transactionOfDistinctRows(statements)
    else await this.#db.transaction(statements)
  }

  async hit(bucket: string, limit: number, windowSeconds: number): Promise<boolean> {
    if (this.#counters) {
      // Redis down is a store outage to the callers: 503 and Retry-After, never a count skipped.
      return this.#counters.hit(bucket, limit, windowSeconds).catch((error: unknown) => {
        throw new StoreUnavailableError(error)
      })
    }
    const now = this.#seconds()
    await this.#purgeExpired(now)
    const [row] = await this.#db.query(HIT_SQL, hitParams(bucket, windowSeconds, now))
    return integer(row?.count) <= limit
  }

  close(): Promise<void> {
    return this.#db.close()
  }

  #userRecords(): UserRecords {
    const db = this.#db
    const findOne = async (column: 'id' | 'username' | 'external_id', value: string) => {
      // Never stored, so never found (PostgreSQL would fail on the query).
      if (!storable(value)) return undefined
      const [row] = await db.query(`SELECT * FROM users WHERE ${column} = ?`, [value])
      return row ? toUser(row) : undefined
    }
    const folded = (db.kind === 'postgres' ? POSTGRES_DIALECT : SQLITE_DIALECT).foldCase('username')
    return {
      create: async (user) => {
        const username = normalizeUsername(user.username)
        const created: User = {
          ...user,
          username,
          id: randomUUID(),
          createdAt: this.#seconds(),
          disabledAt: undefined,
        }
        // A row older than the rule may hold the name in other case: that is the same name.
        const inserted = await db.execute(
          `INSERT INTO users (id, username, password_hash, external_id, claims, created_at)
           SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users WHERE ${folded} = ?)`,
          [
            created.id,
            text('username', username),
            optionalText('passwordHash', created.passwordHash),
            optionalText('externalId', created.externalId),
            JSON.stringify(created.claims),
            created.createdAt,
            username,
          ],
        )
        if (inserted === 0) throw new Error(`storage: a user named ${username} already exists`)
        return created
      },
      findById: (id) => findOne('id', id),
      findByUsername: async (username) => {
        const name = normalizeUsername(username)
        if (!storable(name)) return undefined
        const rows = await db.query(`SELECT * FROM users WHERE ${folded} = ? LIMIT 2`, [name])
        if (rows.length > 1) {
          const names = rows.map((row) => JSON.stringify(String(row.username))).join(' and ')
          throw new AmbiguousUsernameError(
            `username ${name} is ambiguous: users ${names} were stored before usernames were case-folded; name the user by its id instead (gatehouse users list shows ids), e.g. to delete one`,
          )
        }
        return rows[0] ? toUser(rows[0]) : undefined
      },
      findByExternalId: (externalId) => findOne('external_id', externalId),
      list: async () => (await db.query('SELECT * FROM users ORDER BY created_at, username', [])).map(toUser),
      setPassword: async (id, passwordHash) =>
        storable(id) &&
        (await db.execute('UPDATE users SET password_hash = ? WHERE id = ?', [
          text('passwordHash', passwordHash),
          id,
        ])) > 0,
      setDisabled: async (id, disabled) =>
        storable(id) &&
        (await db.execute('UPDATE users SET disabled_at = ? WHERE id = ?', [
          disabled ? this.#seconds() : null,
          id,
        ])) > 0,
      async delete(id) {
        if (!storable(id)) return false
        const deleted = await db.execute('DELETE FROM users WHERE id = ?', [id])
        await db.execute('DELETE FROM consents WHERE user_id = ?', [id])
        await db.execute('DELETE FROM vault_connections WHERE user_id = ?', [id])
        return deleted > 0
      },
    }
  }

  #consentRecords(): ConsentRecords {
    const db = this.#db
    return {
      async find(userId, clientId) {
        if (!storable(userId) || !storable(clientId)) return undefined
        const [row] = await db.query('SELECT * FROM consents WHERE user_id = ? AND client_id = ?', [
          userId,
          clientId,
        ])
        return row ? toConsent(row) : undefined
      },
      async save(consent) {
        await db.execute(
          `INSERT INTO consents (user_id, client_id, resources, granted_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (user_id, client_id) DO UPDATE SET resources = excluded.resources,
             granted_at = excluded.granted_at`,
          [
            text('userId', consent.userId),
            text('clientId', consent.clientId),
            JSON.stringify(consent.resources),
            consent.grantedAt,
          ],
        )
      },
      async revoke(userId, clientId) {
        if (!storable(userId) || !storable(clientId)) return false
        const changed = await db.execute('DELETE FROM consents WHERE user_id = ? AND client_id = ?', [
          userId,
          clientId,
        ])
        return changed > 0
      },
      async listByUser(userId) {
        if (!storable(userId)) return []
        const rows = await db.query(
          'SELECT * FROM consents WHERE user_id = ? ORDER BY granted_at, client_id',
          [userId],
        )
        return rows.map(toConsent)
      },
      async revokeClient(clientId) {
        if (!storable(clientId)) return 0
        return db.execute('DELETE FROM consents WHERE client_id = ?', [clientId])
      },
    }
  }

  #keyRecords(): KeyRecords {
    const db = this.#db
    return {
      list: async () =>
        (await db.query('SELECT * FROM signing_keys ORDER BY created_at DESC, kid', [])).map(toSigningKey),
      async insert(key) {
        await db.execute(
          `INSERT INTO signing_keys (kid, alg, encrypted_jwk, state, created_at, retire_after)
           VALUES (?, ?, ?, ?, ?, ?)`,
          [
            text('kid', key.kid),
            text('alg', key.alg),
            text('encryptedJwk', key.encryptedJwk),
            key.state,
            key.createdAt,
            key.retireAfter ?? null,
          ],
        )
      },
      async activate(kid, retireAfter) {
        text('kid', kid)
        // Retire first: a unique index allows one active key, so two racing rotations cannot both win.
        await db.transaction([
          {
            sql: `UPDATE signing_keys SET state = 'retired', retire_after = ? WHERE state = 'active' AND kid <> ?`,
            params: [retireAfter, kid],
          },
          {
            sql: `UPDATE signing_keys SET state = 'active', retire_after = NULL WHERE kid = ?`,
            params: [kid],
            orFail: () => new Error('storage: no signing key with this kid'),
          },
        ])
      },
      async retain(kid, until) {
        await db.execute(
          `UPDATE signing_keys SET retire_after = ? WHERE kid = ? AND state = 'retired' AND retire_after < ?`,
          [until, text('kid', kid), until],
        )
      },
      deleteExpired: (now) =>
        db.execute(`DELETE FROM signing_keys WHERE state = 'retired' AND retire_after <= ?`, [now]),
    }
  }

  #revocationRecords(): RevocationRecords {
    const db = this.#db
    const seconds = () => this.#seconds()
    return {
      async add(subject, clientId, keepSeconds) {
        const now = seconds()
        await db.execute(
          `INSERT INTO token_revocations (subject, client_key, revoked_at, expires_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (subject, client_key) DO UPDATE SET revoked_at = excluded.revoked_at,
             expires_at = excluded.expires_at`,
          [lookupKey(subject), clientKey(clientId), now, now + keepSeconds],
        )
      },
      async addClient(clientId, keepSeconds) {
        const now = seconds()
        await db.execute(
          `INSERT INTO token_revocations (subject, client_key, revoked_at, expires_at) VALUES ('*', ?, ?, ?)
           ON CONFLICT (subject, client_key) DO UPDATE SET revoked_at = excluded.revoked_at,
             expires_at = excluded.expires_at`,
          [clientKey(clientId), now, now + keepSeconds],
        )
      },
      async revokedAt(subject, clientId) {
        const [row] = await db.query(
          `SELECT MAX(revoked_at) AS revoked_at FROM token_revocations
           WHERE (subject = ? AND client_key IN ('*', ?) OR subject = '*' AND client_key = ?)
             AND expires_at > ?`,
          [lookupKey(subject), clientKey(clientId), clientKey(clientId), seconds()],
        )
        return optionalInteger(row?.revoked_at)
      },
    }
  }

  #connectionRecords(): ConnectionRecords {
    const db = this.#db
    const seconds = () => this.#seconds()
    const find = async (userId: string, connectionId: string) => {
      if (!storable(userId) || !storable(connectionId)) return undefined
      const [row] = await db.query(
        'SELECT * FROM vault_connections WHERE user_id = ? AND connection_id = ?',
        [userId, connectionId],
      )
      return row ? toConnection(row) : undefined
    }
    return {
      find,
      async listByUser(userId) {
        if (!storable(userId)) return []
        const rows = await db.query(
          'SELECT * FROM vault_connections WHERE user_id = ? ORDER BY connection_id',
          [userId],
        )
        return rows.map(toConnection)
      },
      async list(connectionId) {
        const rows =
          connectionId === undefined
            ? await db.query('SELECT * FROM vault_connections ORDER BY user_id, connection_id', [])
            : await db.query('SELECT * FROM vault_connections WHERE connection_id = ? ORDER BY user_id', [
                text('connectionId', connectionId),
              ])
        return rows.map(toConnection)
      },
      async save(connection) {
        const now = seconds()
        await db.execute(
          `INSERT INTO vault_connections (user_id, connection_id, sealed, key_id, expires_at, scope, status,
             version, lease_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'active', 1, NULL, ?, ?)
           ON CONFLICT (user_id, connection_id) DO UPDATE SET sealed = excluded.sealed,
             key_id = excluded.key_id, expires_at = excluded.expires_at, scope = excluded.scope,
             status = 'active', version = vault_connections.version + 1, lease_until = NULL,
             created_at = excluded.created_at, updated_at = excluded.updated_at`,
          [
            text('userId', connection.userId),
            text('connectionId', connection.connectionId),
            text('sealed', connection.sealed),
            text('keyId', connection.keyId),
            connection.expiresAt ?? null,
            optionalText('scope', connection.scope),
            now,
            now,
          ],
        )
        return (await find(connection.userId, connection.connectionId)) as VaultConnection
      },
      async update(userId, connectionId, version, changes) {
        if (!storable(userId) || !storable(connectionId)) return undefined
        const columns = (Object.keys(CONNECTION_COLUMNS) as (keyof ConnectionChanges)[]).filter(
          (key) => key in changes,
        )
        const values = columns.map((key) => {
          const value = changes[key]
          return typeof value === 'string' ? text(key, value) : (value ?? null)
        })
        const sets = columns.map((key) => `${CONNECTION_COLUMNS[key]} = ?, `).join('')
        const changed = await db.execute(
          `UPDATE vault_connections SET ${sets}version = version + 1, updated_at = ?
           WHERE user_id = ? AND connection_id = ? AND version = ?`,
          [...values, seconds(), userId, connectionId, version],
        )
        return changed === 1 ? find(userId, connectionId) : undefined
      },
      async delete(userId, connectionId) {
        if (!storable(userId) || !storable(connectionId)) return false
        const changed = await db.execute(
          'DELETE FROM vault_connections WHERE user_id = ? AND connection_id = ?',
          [userId, connectionId],
        )
        return changed > 0
      },
    }
  }

  #auditRecords(): AuditRecords {
    const db = this.#db
    return {
      async append(event: AuditEvent) {
        const { sql, params } = auditStatement(event)
        await db.execute(sql, params)
      },
      async recent(limit) {
        const rows = await db.query('SELECT at, type, data FROM audit_events ORDER BY id DESC LIMIT ?', [
          limit,
        ])
        return rows.map((row) => ({
          at: integer(row.at),
          type: String(row.type),
          data: JSON.parse(String(row.data)),
        }))
      },
      async prune(before, keep) {
        const old = await db.execute('DELETE FROM audit_events WHERE at < ?', [before])
        // The id of the newest event past `keep`, if there are that many: it and every older one go.
        const [edge] = await db.query('SELECT id FROM audit_events ORDER BY id DESC LIMIT 1 OFFSET ?', [keep])
        const extra = edge
          ? await db.execute('DELETE FROM audit_events WHERE id <= ?', [integer(edge.id)])
          : 0
        return old + extra
      },
    }
  }

  #clientUsageRecords(): ClientUsageRecords {
    const db = this.#db
    return {
      async touch(clientId, at) {
        await db.execute(
          `INSERT INTO client_usage (client_key, client_id, last_used_at) VALUES (?, ?, ?)
           ON CONFLICT (client_key) DO UPDATE SET last_used_at = excluded.last_used_at
           WHERE client_usage.last_used_at < excluded.last_used_at`,
          [lookupKey(clientId), text('client_id', clientId), at],
        )
      },
      async list() {
        const rows = await db.query('SELECT client_id, last_used_at FROM client_usage', [])
        return new Map(rows.map((row) => [String(row.client_id), integer(row.last_used_at)]))
      },
    }
  }
}
