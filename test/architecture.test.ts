import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { test } from 'node:test'

const SRC = resolve(import.meta.dirname, '../src')

/**
 * Which parts each part may import, and which packages at run time (`import type` is free: it is erased).
 * The guard stands alone: it is what other people embed, so it must never pull in the rest of Gatehouse.
 * `errors` (the base of the registries) depends on nothing, so every other part may use it.
 */
const ALLOWED: Record<string, { parts: string[]; packages: string[] }> = {
  guard: { parts: [], packages: ['jose'] },
  errors: { parts: [], packages: [] },
  // zod is the configuration schema's: the guard, which others embed, never loads it.
  config: { parts: ['guard', 'errors'], packages: ['yaml', 'zod'] },
  storage: { parts: [], packages: ['pg', '@redis/client'] },
  // The guard's small helpers (loopback addresses) are shared, never the other way round.
  // on-behalf-of: the vault shares its rule for which token endpoint answers are worth a later try.
  'auth-server': {
    parts: ['storage', 'guard', 'errors', 'on-behalf-of'],
    packages: ['jose', 'oidc-provider', 'openid-client'],
  },
  // The exchange client a server that embeds the guard uses too: nothing of the gateway or the authorization server.
  'on-behalf-of': { parts: ['guard', 'errors'], packages: ['jose'] },
  gateway: { parts: ['guard', 'config', 'errors', 'on-behalf-of'], packages: ['jose', 'pino', 'yaml'] },
  // probe is an OAuth and MCP client: oauth4webapi for the OAuth steps, the MCP SDK for initialize and tools/list.
  cli: {
    parts: ['guard', 'config', 'gateway', 'storage', 'auth-server', 'errors'],
    packages: ['oauth4webapi', '@modelcontextprotocol/sdk'],
  },
}

function* sourceFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield* sourceFiles(path)
    else if (entry.name.endsWith('.ts')) yield path
  }
}

/** Runtime imports only: `import type` and `export type` lines are skipped. */
function runtimeImports(source: string): string[] {
  const specifiers: string[] = []
  for (const match of source.matchAll(/^\s*(?:import|export)\s+(?!type\b)[^'"]*?from\s+['"]([^'"]+)['"]/gm)) {
    specifiers.push(match[1] as string)
  }
  for (const match of source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g))
    specifiers.push(match[1] as string)
  return specifiers
}

test('each part imports only what the architecture allows', () => {
  const violations: string[] = []
  for (const file of sourceFiles(SRC)) {
    const part = relative(SRC, file).split('/')[0] as string
    const rules = ALLOWED[part]
    if (!rules) {
      violations.push(`${relative(SRC, file)}: part "${part}" has no entry in ALLOWED`)
      continue
    }
    for (const specifier of runtimeImports(readFileSync(file, 'utf8'))) {
      if (specifier.startsWith('node:')) continue
      if (specifier.startsWith('.')) {
        const target = relative(SRC, resolve(dirname(file), specifier))
        const targetPart = target.split('/')[0] as string
        if (target.startsWith('..')) {
          if (part !== 'cli') violations.push(`${relative(SRC, file)} imports ${specifier} from outside src/`)
        } else if (targetPart !== part && !rules.parts.includes(targetPart)) {
          violations.push(`${relative(SRC, file)} imports ${specifier} (part "${targetPart}")`)
        }
        continue
      }
      const pkg = specifier.startsWith('@')
        ? specifier.split('/').slice(0, 2).join('/')
        : (specifier.split('/')[0] as string)
      if (!rules.packages.includes(pkg)) violations.push(`${relative(SRC, file)} imports package ${pkg}`)
    }
  }
  assert.deepEqual(violations, [])
})

test('docs/architecture.md names only folders and files that exist', () => {
  const page = readFileSync(resolve(import.meta.dirname, '../docs/architecture.md'), 'utf8')
  const paths = [...page.matchAll(/`((?:src|test)\/[\w./-]+?)\/?`/g)].map((match) => match[1] as string)
  assert.ok(paths.length > 10)
  const missing = paths.filter((path) => !existsSync(resolve(import.meta.dirname, '..', path)))
  assert.deepEqual(missing, [])
})
