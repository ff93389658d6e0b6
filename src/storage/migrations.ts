/** Column types that differ between the backends. */
export interface Dialect {
  /** Seconds since the epoch, counters. */
  integer: string
  autoIncrementKey: string
  /** The string at the top-level `key` of a JSON text column, null when absent. */
  jsonText(column: string, key: string): string
  /** The column with A-Z folded to a-z and nothing else changed: `normalizeUsername` in SQL. */
  foldCase(column: string): string
}

export const SQLITE_DIALECT: Dialect = {
  integer: 'INTEGER',
  autoIncrementKey: 'INTEGER PRIMARY KEY AUTOINCREMENT',
  jsonText: (column, key) => `json_extract(${column}, '$.${key}')`,
  // SQLite's lower() folds ASCII letters only (no ICU).
  foldCase: (column) => `lower(${column})`,
}

export const POSTGRES_DIALECT: Dialect = {
  integer: 'BIGINT',
  autoIncrementKey: 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY',
  jsonText: (column, key) => `(${column}::json ->> '${key}')`,
  // lower() would follow the database's locale (É to é); translate() folds ASCII only.
  foldCase: (column) => `translate(${column}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')`,
}

export const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at BIGINT NOT NULL
)`

/**
 * Append only: a released version is never edited, a change is a new version. docs/storage-schema.md
 * describes the resulting schema.
 */
export const MIGRATIONS: ReadonlyArray<{ version: number; statements: (dialect: Dialect) => string[] }> = [
  {
    version: 1,
    statements: (dialect) => [
      `CREATE TABLE oidc_records (
        model TEXT NOT NULL,
        id TEXT NOT NULL,
        payload TEXT NOT NULL,
        grant_id TEXT,
        uid TEXT,
        user_code TEXT,
        expires_at ${dialect.integer},
        consumed_at ${dialect.integer},
        PRIMARY KEY (model, id)
      )`,
      'CREATE INDEX oidc_records_grant_id ON oidc_records (grant_id) WHERE grant_id IS NOT NULL',
      'CREATE INDEX oidc_records_uid ON oidc_records (model, uid) WHERE uid IS NOT NULL',
      'CREATE INDEX oidc_records_user_code ON oidc_records (model, user_code) WHERE user_code IS NOT NULL',
      'CREATE INDEX oidc_records_expires_at ON oidc_records (expires_at) WHERE expires_at IS NOT NULL',
      `CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        external_id TEXT UNIQUE,
        claims TEXT NOT NULL,
        created_at ${dialect.integer} NOT NULL
      )`,
      `CREATE TABLE consents (
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        resources TEXT NOT NULL,
        granted_at ${dialect.integer} NOT NULL,
        PRIMARY KEY (user_id, client_id)
      )`,
      `CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        encrypted_jwk TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'retired')),
        created_at ${dialect.integer} NOT NULL,
        retire_after ${dialect.integer}
      )`,
      `CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active'`,
      `CREATE TABLE audit_events (
        id ${dialect.autoIncrementKey},
        at ${dialect.integer} NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL
      )`,
      `CREATE TABLE rate_limits (
        bucket TEXT NOT NULL,
        window_start ${dialect.integer} NOT NULL,
        count INTEGER NOT NULL,
        expires_at ${dialect.integer} NOT NULL,
        PRIMARY KEY (bucket, window_start)
      )`,
      'CREATE INDEX rate_limits_expires_at ON rate_limits (expires_at)',
    ],
  },
  {
    // Revocation: a user's grants are found by account, disabled users kept, revoked access tokens listed.
    version: 2,
    statements: (dialect) => [
      'ALTER TABLE oidc_records ADD COLUMN account_id TEXT',
      // Records written before this version; the LIKE only skips payloads that cannot have the key.
      `UPDATE oidc_records SET account_id = ${dialect.jsonText('payload', 'accountId')}
       WHERE payload LIKE '%"accountId":"%'`,
      'CREATE INDEX oidc_records_account_id ON oidc_records (account_id) WHERE account_id IS NOT NULL',
      `ALTER TABLE users ADD COLUMN disabled_at ${dialect.integer}`,
      `CREATE TABLE token_revocations (
        subject TEXT NOT NULL,
        client_key TEXT NOT NULL,
        revoked_at ${dialect.integer} NOT NULL,
        expires_at ${dialect.integer} NOT NULL,
        PRIMARY KEY (subject, client_key)
      )`,
      'CREATE INDEX token_revocations_expires_at ON token_revocations (expires_at)',
    ],
  },
  {
    // One username rule (`normalizeUsername`): federated names kept their subject's capitals before it.
    // A name whose folded form another user also has stays as it is: lookups of it are refused as ambiguous.
    version: 3,
    statements: (dialect) => [
      `UPDATE users SET username = ${dialect.foldCase('username')}
       WHERE username <> ${dialect.foldCase('username')}
       AND NOT EXISTS (SELECT 1 FROM users other WHERE other.id <> users.id
         AND ${dialect.foldCase('other.username')} = ${dialect.foldCase('users.username')})`,
      `CREATE INDEX users_username_folded ON users (${dialect.foldCase('username')})`,
    ],
  },
  {
    // The admin console: audit events pruned by age (an index on `at`), and when each client last got a token.
    version: 4,
    statements: (dialect) => [
      'CREATE INDEX audit_events_at ON audit_events (at)',
      `CREATE TABLE client_usage (
        client_key TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        last_used_at ${dialect.integer} NOT NULL
      )`,
    ],
  },
  {
    // The token vault: each user's connected third-party accounts, tokens sealed by the vault.
    version: 5,
    statements: (dialect) => [
      `CREATE TABLE vault_connections (
        user_id TEXT NOT NULL,
        connection_id TEXT NOT NULL,
        sealed TEXT NOT NULL,
        key_id TEXT NOT NULL,
        expires_at ${dialect.integer},
        scope TEXT,
        status TEXT NOT NULL CHECK (status IN ('active', 'broken')),
        version ${dialect.integer} NOT NULL,
        lease_until ${dialect.integer},
        created_at ${dialect.integer} NOT NULL,
        updated_at ${dialect.integer} NOT NULL,
        PRIMARY KEY (user_id, connection_id)
      )`,
      'CREATE INDEX vault_connections_connection_id ON vault_connections (connection_id)',
    ],
  },
]

/** The statements that bring a database at `applied` versions up to date, each followed by its bookkeeping. */
export function pendingMigrations(dialect: Dialect, applied: Set<number>, now: number) {
  return MIGRATIONS.filter((migration) => !applied.has(migration.version)).flatMap((migration) => [
    ...migration.statements(dialect).map((sql) => ({ sql, params: [] as number[] })),
    {
      sql: 'INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)',
      params: [migration.version, now],
    },
  ])
}
