import { closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { MIGRATIONS_TABLE, pendingMigrations, SQLITE_DIALECT } from './migrations.ts'
import {
  type Row,
  type SqlDriver,
  type SqlStatement,
  SqlStore,
  type SqlValue,
  type StoreOptions,
  StoreUnavailableError,
} from './sql_store.ts'

/** How long a writer waits for another connection (another process on the same file) to finish. */
const BUSY_TIMEOUT_MS = 10_000
/** SQLite's primary result codes for a file that is locked past the timeout or cannot be read or written. */
const UNAVAILABLE_CODES = new Set([
  5 /* BUSY */, 6 /* LOCKED */, 10 /* IOERR */, 13 /* FULL */, 14 /* CANTOPEN */,
])

function classified<T>(work: () => T): T {
  try {
    return work()
  } catch (error) {
    const code = (error as { errcode?: unknown }).errcode
    throw typeof code === 'number' && UNAVAILABLE_CODES.has(code & 0xff)
      ? new StoreUnavailableError(error)
      : error
  }
}

/**
 * `node:sqlite` is synchronous: each call runs to completion before the returned promise settles, so no
 * other call of this process can slip into a transaction; other processes are kept out by
 * `BEGIN IMMEDIATE`, which takes the write lock up front instead of failing on upgrade.
 */
class SqliteDriver implements SqlDriver {
  readonly kind = 'sqlite'
  readonly #db: DatabaseSync
  readonly #statements = new Map<string, StatementSync>()

  constructor(db: DatabaseSync) {
    this.#db = db
  }

  #prepare(sql: string): StatementSync {
    let statement = this.#statements.get(sql)
    if (!statement) {
      statement = this.#db.prepare(sql)
      this.#statements.set(sql, statement)
    }
    return statement
  }

  #run(sql: string, params: SqlValue[]): number {
    return Number(this.#prepare(sql).run(...params).changes)
  }

  async query(sql: string, params: SqlValue[]): Promise<Row[]> {
    return classified(() => this.#prepare(sql).all(...params) as Row[])
  }

  async execute(sql: string, params: SqlValue[]): Promise<number> {
    return classified(() => this.#run(sql, params))
  }

  async transaction(statements: SqlStatement[]): Promise<void> {
    // One statement is a transaction of its own; one that changes nothing has nothing to undo.
    const [only] = statements
    if (statements.length === 1 && only) {
      if (classified(() => this.#run(only.sql, only.params)) === 0 && only.orFail) throw only.orFail()
      return
    }
    classified(() =>
      this.immediately(() => {
        for (const { sql, params, orFail } of statements) {
          if (this.#run(sql, params) === 0 && orFail) throw orFail()
        }
      }),
    )
  }

  immediately<T>(work: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE')
    try {
      const result = work()
      this.#db.exec('COMMIT')
      return result
    } catch (error) {
      this.#db.exec('ROLLBACK')
      throw error
    }
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close()
  }
}

/** Opens (creating it owner-only when missing) and migrates the SQLite file at `path`. */
export function openSqliteStore(path: string, options: StoreOptions = {}): SqlStore {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  // Created here so that the mode applies; SQLite gives its -wal and -shm files the same mode.
  closeSync(openSync(path, 'a', 0o600))
  const db = new DatabaseSync(path)
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
    db.exec('PRAGMA journal_mode = WAL')
    db.exec('PRAGMA synchronous = NORMAL')
    const driver = new SqliteDriver(db)
    driver.immediately(() => {
      db.exec(MIGRATIONS_TABLE)
      const applied = new Set(
        db
          .prepare('SELECT version FROM schema_migrations')
          .all()
          .map((row) => Number(row.version)),
      )
      for (const { sql, params } of pendingMigrations(
        SQLITE_DIALECT,
        applied,
        Math.floor(Date.now() / 1000),
      )) {
        db.prepare(sql).run(...params)
      }
    })
    return new SqlStore(driver, options)
  } catch (error) {
    db.close()
    throw error
  }
}
