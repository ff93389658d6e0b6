import { resolve } from 'node:path'
import { openPostgresStore } from './postgres.ts'
import type { StoreOptions } from './sql_store.ts'
import { openSqliteStore } from './sqlite.ts'
import type { Store } from './store.ts'

/**
 * Opens the store named by `storage.url` and brings its schema up to date:
 * - absent: the SQLite file `<dataDir>/gatehouse.db`;
 * - `sqlite:<path>` (or `sqlite://<path>`): that SQLite file, a relative path being taken from `dataDir`;
 * - `postgres://…` or `postgresql://…`: PostgreSQL, with `?schema=<name>` to keep the tables in that schema.
 * The URL is never echoed in errors: it may hold a password.
 */
export async function openStore(
  url: string | undefined,
  options: { dataDir: string } & StoreOptions,
): Promise<Store> {
  if (url === undefined) return openSqliteStore(resolve(options.dataDir, 'gatehouse.db'), options)
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\//, '')
    if (path === '') throw new Error('storage.url: sqlite: needs a file path')
    return openSqliteStore(resolve(options.dataDir, path), options)
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return openPostgresStore(url, options)
  throw new Error('storage.url: expected sqlite:<path>, postgres://… or postgresql://…')
}
