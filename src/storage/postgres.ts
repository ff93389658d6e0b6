import pg from 'pg'
import { MIGRATIONS_TABLE, POSTGRES_DIALECT, pendingMigrations } from './migrations.ts'
import {
  type Row,
  type SqlDriver,
  type SqlStatement,
  SqlStore,
  type SqlValue,
  type StoreOptions,
} from './sql_store.ts'

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/

/** The store's SQL uses `?` placeholders (none appear in literals); PostgreSQL numbers them. */
function numbered(sql: string): string {
  let index = 0
  return sql.replace(/\?/g, () => `$${++index}`)
}

class PostgresDriver implements SqlDriver {
  readonly kind = 'postgres'
  readonly #pool: pg.Pool

  constructor(pool: pg.Pool) {
    this.#pool = pool
  }

  async query(sql: string, params: SqlValue[]): Promise<Row[]> {
    return (await this.#pool.query(numbered(sql), params)).rows
  }

  async execute(sql: string, params: SqlValue[]): Promise<number> {
    return (await this.#pool.query(numbered(sql), params)).rowCount ?? 0
  }

  async transaction(statements: SqlStatement[]): Promise<void> {
    await inTransaction(this.#pool, async (client) => {
      for (const { sql, params, orFail } of statements) {
        const result = await client.query(numbered(sql), params)
        if (result.rowCount === 0 && orFail) throw new Error(orFail)
      }
    })
  }

  close(): Promise<void> {
    return this.#pool.end()
  }
}

async function inTransaction(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await work(client)
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release()
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
