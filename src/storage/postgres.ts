import pg from 'pg'
import { MIGRATIONS_TABLE, POSTGRES_DIALECT, pendingMigrations } from './migrations.ts'
import {
  type Row,
  type SqlDriver,
  type SqlStatement,
  SqlStore,
  type SqlValue,
  type StoreOptions,
  StoreUnavailableError,
} from './sql_store.ts'

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/
/** A database that takes longer to accept a connection counts as unavailable (the request gets 503). */
const CONNECT_TIMEOUT_MS = 5_000
/** Socket errors of a database that is down or unreachable. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
])
/** SQLSTATE of the guard in {@link PostgresDriver.transactionOfDistinctRows}. */
const DIVISION_BY_ZERO = '22012'
/** What `pg` says when a connection is lost or cannot be made in time. */
const CONNECTION_LOST =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/

/**
 * The database is down or refuses work for now: a socket error, a lost connection, SQLSTATE class 08
 * (connection exception), 53 (insufficient resources: too many connections, disk full) or 57P01-57P03
 * (shutting down, crashed, starting up).
 */
function isUnavailable(error: unknown): boolean {
  if (error instanceof AggregateError && error.errors.some(isUnavailable)) return true
  if (!(error instanceof Error)) return false
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || /^(08|53|57P0[123])/.test(code))) return true
  return CONNECTION_LOST.test(error.message)
}

async function classified<T>(work: Promise<T>): Promise<T> {
  try {
    return await work
  } catch (error) {
    throw isUnavailable(error) ? new StoreUnavailableError(error) : error
  }
}

/** The store's statements are a few texts, numbered once each (a guard against any unbounded growth). */
const numberedTexts = new Map<string, string>()
const NUMBERED_TEXTS = 1000

/** The store's SQL uses `?` placeholders (none appear in literals); PostgreSQL numbers them. */
function numbered(sql: string): string {
  let text = numberedTexts.get(sql)
  if (text === undefined) {
    let index = 0
    text = sql.replace(/\?/g, () => `$${++index}`)
    if (numberedTexts.size >= NUMBERED_TEXTS) numberedTexts.clear()
    numberedTexts.set(sql, text)
  }
  return text
}

class PostgresDriver implements SqlDriver {
  readonly kind = 'postgres'
  readonly #pool: pg.Pool

  constructor(pool: pg.Pool) {
    this.#pool = pool
  }

  async query(sql: string, params: SqlValue[]): Promise<Row[]> {
    return (await classified(this.#pool.query(numbered(sql), params))).rows
  }

  async execute(sql: string, params: SqlValue[]): Promise<number> {
    return (await classified(this.#pool.query(numbered(sql), params))).rowCount ?? 0
  }

  async transaction(statements: SqlStatement[]): Promise<void> {
    await classified(
      inTransaction(this.#pool, async (client) => {
        for (const { sql, params, orFail } of statements) {
          const result = await client.query(numbered(sql), params)
          if (result.rowCount === 0 && orFail) throw orFail()
        }
      }),
    )
  }

  /**
   * One statement of data-modifying CTEs, which PostgreSQL runs all or none. A statement with `orFail` that
   * changed no row makes the final SELECT divide by zero, which aborts (and so undoes) the whole statement.
   */
  async transactionOfDistinctRows(statements: SqlStatement[]): Promise<void> {
    const ctes = statements.map(({ sql }, i) => `w${i} AS (${sql} RETURNING 1)`)
    const guarded = statements.flatMap(({ orFail }, i) => (orFail ? [i] : []))
    const checks = guarded.map((i) => `1 / (SELECT count(*) FROM w${i})`)
    const sql = `WITH ${ctes.join(', ')} SELECT ${checks.length > 0 ? checks.join(', ') : '1'}`
    try {
      await classified(
        this.#pool.query(
          numbered(sql),
          statements.flatMap(({ params }) => params),
        ),
      )
    } catch (error) {
      const first = statements[guarded[0] ?? -1]
      if ((error as { code?: unknown }).code === DIVISION_BY_ZERO && first?.orFail) throw first.orFail()
      throw error
    }
  }

  close(): Promise<void> {
    return this.#pool.end()
  }
}

async function inTransaction(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await pool.connect()
  // A checked-out client has no listener of the pool's: a connection lost now (PostgreSQL restarted) is
  // emitted as 'error' on it, which would crash the process. The query in flight rejects with it anyway.
  let lost: Error | undefined
  const onError = (error: Error) => {
    lost = error
  }
  client.on('error', onError)
  try {
    await client.query('BEGIN')
    await work(client)
    await client.query('COMMIT')
  } catch (error) {
    // A connection whose rollback failed is in an unknown state: the pool drops it.
    await client.query('ROLLBACK').catch((failed: Error) => {
      lost ??= failed
    })
    throw error
  } finally {
    client.removeListener('error', onError)
    client.release(lost)
  }
}

/**
 * Splits Gatehouse's own `schema` parameter off the URL: every connection then gets it as its
 * `search_path`, so the tables live there (created when missing).
 */
function parseUrl(url: string): { connectionString: string; schema: string | undefined } {
  const parsed = new URL(url)
  const schema = parsed.searchParams.get('schema') ?? undefined
  parsed.searchParams.delete('schema')
  if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
    throw new Error('storage.url: schema must be lower-case letters, digits and underscores')
  }
  return { connectionString: parsed.toString(), schema }
}

/** Connects to PostgreSQL and migrates; several instances may start at once. */
export async function openPostgresStore(url: string, options: StoreOptions = {}): Promise<SqlStore> {
  const { connectionString, schema } = parseUrl(url)
  const pool = new pg.Pool({
    connectionString,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    ...(schema === undefined ? {} : { options: `-c search_path=${schema}` }),
  })
  // A connection dropped while idle is replaced by the next query; without a listener it would crash the process.
  pool.on('error', () => {})
  try {
    await inTransaction(pool, async (client) => {
      // Held until commit: a second instance starting now waits here, then finds the migrations applied.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`gatehouse.migrate.${schema ?? ''}`])
      if (schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
      await client.query(MIGRATIONS_TABLE)
      const { rows } = await client.query('SELECT version FROM schema_migrations')
      const applied = new Set(rows.map((row) => Number(row.version)))
      for (const { sql, params } of pendingMigrations(
        POSTGRES_DIALECT,
        applied,
        Math.floor(Date.now() / 1000),
      )) {
        await client.query(numbered(sql), params)
      }
    })
    return new SqlStore(new PostgresDriver(pool), options)
  } catch (error) {
    await pool.end()
    throw error
  }
}
