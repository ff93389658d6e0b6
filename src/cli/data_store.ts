import { type ParseArgsOptionsConfig, parseArgs } from 'node:util'
import { type StorageSettings, storageSettings } from '../config/embedded.ts'
import { loadSettings } from '../config/load.ts'
import type { Settings } from '../config/schema.ts'
import type { Store } from '../storage/store.ts'
import { openDataStore } from './embedded_server.ts'
import { failWith } from './errors.ts'

/** The flags every admin command takes to find the store `gatehouse serve` uses. */
export const STORE_OPTIONS = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

export const STORE_HELP = `  --config <file>    the YAML file gatehouse serve uses (data_dir, storage, secret)   (GATEHOUSE_CONFIG)
  --data-dir <dir>   default ./.gatehouse                                            (GATEHOUSE_DATA_DIR)
  GATEHOUSE_STORAGE_URL and GATEHOUSE_SECRET apply as for gatehouse serve.
  -h, --help         this help`

/**
 * The arguments of an admin command: the store flags plus `extra`, then `<action> [arguments…]`. Prints
 * `help` and returns undefined when asked for it or when no action is given.
 */
export function parseAdminArgs<const T extends ParseArgsOptionsConfig>(
  argv: string[],
  help: string,
  extra: T,
) {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { ...STORE_OPTIONS, ...extra },
    allowPositionals: true,
  })
  const [action, ...rest] = positionals
  if ((values as { help?: boolean }).help || action === undefined) {
    console.log(help)
    return undefined
  }
  return { values, action, rest }
}

/** The admin command's view of `gatehouse serve`'s configuration: the file (read once) and the store settings. */
export interface AdminSettings extends StorageSettings {
  dataDir: string
  /** The validated settings of the file and the environment. */
  settings: Settings
}

/** The store settings exactly as `gatehouse serve` resolves them: flags, then GATEHOUSE_*, then the file. */
async function adminSettings(
  values: { config?: string | undefined; 'data-dir'?: string | undefined },
  env: Record<string, string | undefined>,
) {
  const { settings } = await loadSettings({ config: values.config, dataDir: values['data-dir'] }, env)
  return { settings, storage: storageSettings(settings, false) }
}

/** Runs `use` on the store of `gatehouse serve`, closing it afterwards. */
export async function withStore<T>(
  values: { config?: string | undefined; 'data-dir'?: string | undefined },
  use: (store: Store, settings: AdminSettings) => Promise<T>,
): Promise<T> {
  const { settings, storage } = await adminSettings(values, process.env)
  const { store, dataDir, close } = await openDataStore(storage)
  try {
    return await use(store, { ...storage, dataDir, settings })
  } finally {
    await close()
  }
}

/** The positional arguments a subcommand needs, or a usage error naming them. */
export function positionals(given: string[], names: readonly string[], usage: string): string[] {
  if (given.length !== names.length) {
    const expected = names.length ? names.map((name) => `<${name}>`).join(' ') : 'no arguments'
    const got = given.length ? given.map((arg) => JSON.stringify(arg)).join(' ') : 'none'
    failWith('usage', `${usage}: expected ${expected}, got ${got}`)
  }
  return given
}
