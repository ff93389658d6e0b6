import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { SERVE_HELP, SERVE_OPTIONS } from '../../src/cli/serve.ts'
import { configurationMarkdown } from '../../src/config/docs.ts'
import { COMMAND_LINE, settingsOf, settingsSchema } from '../../src/config/schema.ts'

const ROOT = join(import.meta.dirname, '../..')

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield* sources(path)
    else if (entry.name.endsWith('.ts')) yield path
  }
}

describe('the configuration documentation is generated from the schema', () => {
  it('docs/configuration.md is what npm run docs:config writes', () => {
    assert.equal(
      readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8'),
      configurationMarkdown(),
      'docs/configuration.md is stale: run npm run docs:config',
    )
  })

  it('every setting of the schema has a description', () => {
    const undocumented = [...settingsOf(settingsSchema)]
      .filter((entry) => !entry.doc)
      .map((e) => e.path.join('.'))
    assert.deepEqual(undocumented, [])
  })

  it('every GATEHOUSE_* and OAUTH_* variable named in src/ is in gatehouse serve --help and the page', () => {
    const page = configurationMarkdown()
    const named = new Set<string>()
    for (const file of sources(join(ROOT, 'src'))) {
      for (const [name] of readFileSync(file, 'utf8').matchAll(/\b(?:GATEHOUSE|OAUTH)_[A-Z_]+\b/g))
        named.add(name)
    }
    // The variable SERVE_HELP left out before it was generated.
    assert.ok(named.has('GATEHOUSE_STREAM_IDLE_TIMEOUT_MS'))
    for (const name of named) {
      assert.ok(SERVE_HELP.includes(name), `${name} is missing from gatehouse serve --help`)
      assert.ok(page.includes(name), `${name} is missing from docs/configuration.md`)
    }
  })

  it('every flag of gatehouse serve is a documented setting, and every documented flag is parsed', () => {
    const documented = [
      ...[...settingsOf(settingsSchema)].flatMap((entry) => (entry.doc?.flag ? [entry.doc.flag] : [])),
      ...COMMAND_LINE.map((doc) => doc.flag),
    ]
    const parsed = Object.keys(SERVE_OPTIONS).map((name) => (name === 'help' ? '-h, --help' : `--${name}`))
    assert.deepEqual([...parsed].sort(), [...documented].sort())
    for (const flag of parsed) assert.ok(SERVE_HELP.includes(flag), `${flag} is missing from the help`)
  })
})
