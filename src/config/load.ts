import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import type * as z from 'zod/mini'
import { fail } from './errors.ts'
import { type SettingDoc, type Settings, settingsOf, settingsSchema } from './schema.ts'

/** What the command line gave; `undefined` means "not given", so the environment and the file apply. */
export interface SettingsFlags {
  upstream?: string | undefined
  port?: string | undefined
  address?: string | undefined
  config?: string | undefined
  publicUrl?: string | undefined
  logLevel?: string | undefined
  /** The stdio command and its arguments, from after `--`. */
  command?: string[] | undefined
  dataDir?: string | undefined
  /** Development mode: loopback only, a throwaway store, the test user signed in and consent approved. */
  dev?: boolean | undefined
  /** `--stdio-shared`: one stdio child for every session. */
  stdioShared?: boolean | undefined
}

type Env = Record<string, string | undefined>

export interface LoadedSettings {
  settings: Settings
  /** Where each setting given by a flag or a variable came from, by its file key: `transport.port` → `--port`. */
  sources: ReadonlyMap<string, string>
}

/**
 * Reads the file (`--config`, `GATEHOUSE_CONFIG`), lays the variables and then the flags over it, and
 * validates the result against the schema, defaults filled in. A refusal names the setting as it was given
 * (flag, variable or file key) and what to change.
 */
export async function loadSettings(flags: SettingsFlags, env: Env): Promise<LoadedSettings> {
  const path = flags.config ?? env.GATEHOUSE_CONFIG
  const input = path ? await readConfigFile(path) : {}
  const sources = new Map<string, string>()
  for (const { path: key, doc } of settingsOf(settingsSchema)) {
    if (!doc) continue
    const given = fromFlag(flags, doc) ?? fromEnv(env, doc)
    if (given && place(input, key, given.value)) sources.set(key.join('.'), given.source)
  }
  const result = settingsSchema.safeParse(input)
  if (!result.success) fail(describe(firstIssue(result.error.issues), sources, path ?? 'the configuration'))
  return { settings: result.data as Settings, sources }
}

/** The YAML file as it is; the schema checks it. */
async function readConfigFile(path: string): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    return fail(`cannot read the configuration file ${path}: ${(error as Error).message}`)
  }
  try {
    return parseYaml(text) ?? {}
  } catch (error) {
    return fail(`${path} is not valid YAML: ${(error as Error).message}`)
  }
}

function fromFlag(flags: SettingsFlags, doc: SettingDoc) {
  if (!doc.flag) return undefined
  const name = doc.flag.replace(/^--/, '').replace(/-(\w)/g, (_, letter: string) => letter.toUpperCase())
  const value = (flags as Record<string, unknown>)[name]
  return value === undefined ? undefined : { value, source: doc.flag }
}

function fromEnv(env: Env, doc: SettingDoc) {
  const value = doc.env ? env[doc.env] : undefined
  if (value === undefined || !doc.env) return undefined
  if (!doc.list) return { value, source: doc.env }
  const items = value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
  return items.length ? { value: items, source: doc.env } : undefined
}

/** Sets `value` at `key` in the file's mappings; false when a mapping on the way is not one (the schema says so). */
function place(input: unknown, key: readonly string[], value: unknown): boolean {
  let at = input as Record<string, unknown>
  for (const part of key.slice(0, -1)) {
    const next = at[part] ?? {}
    if (typeof next !== 'object' || Array.isArray(next)) return false
    at[part] = next
    at = next as Record<string, unknown>
  }
  if (typeof at !== 'object' || at === null || Array.isArray(at)) return false
  at[key.at(-1) as string] = value
  return true
}

/** A misspelt key first: it is most likely why anything else looks wrong. */
const firstIssue = (issues: z.core.$ZodIssue[]) =>
  (issues.find((issue) => issue.code === 'unrecognized_keys') ?? issues[0]) as z.core.$ZodIssue

function describe(issue: z.core.$ZodIssue, sources: ReadonlyMap<string, string>, file: string): string {
  const key = issue.path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i ? '.' : ''}${String(part)}`))
    .join('')
  const label = sourceOf(key, sources) ?? (key || file)
  return issue.code === 'unrecognized_keys' ? `${label}: ${issue.message}` : `${label} ${issue.message}`
}

/** The flag or variable that gave `key`, or the list it is an entry of. */
function sourceOf(key: string, sources: ReadonlyMap<string, string>): string | undefined {
  for (let at = key; at; at = at.replace(/(\.[^.[]*|\[\d+\])$/, '')) {
    const source = sources.get(at)
    if (source) return at === key ? source : `${source} ${key.slice(at.length).replace(/^\./, '')}`
    if (!/[.[]/.test(at)) break
  }
  return undefined
}
