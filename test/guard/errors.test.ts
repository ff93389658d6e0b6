import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { GUARD_ERRORS, GuardError, type GuardErrorCode } from '../../src/guard/index.ts'

// docs/errors.md and the registry must say the same thing (a drift test, as fastify does for Errors.md).

// The page's first top-level section is the guard's; other parts document theirs after it.
const page = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8').split(/^# /m)[1] ?? ''

interface DocumentedError {
  code: string
  status: number | undefined
  error: string | undefined
  description: string | undefined
  when: boolean
  check: boolean
}

function parseSections(markdown: string): DocumentedError[] {
  return markdown
    .split(/^## /m)
    .slice(1)
    .map((section) => {
      const field = (pattern: RegExp) => pattern.exec(section)?.[1]
      const error = field(/^- OAuth error: (none|`[a-z_]+`)$/m)
      const status = field(/^- Status: (\d{3})$/m)
      return {
        code: field(/^`([a-z_]+)`\n/) ?? section.split('\n', 1)[0] ?? '',
        status: status === undefined ? undefined : Number(status),
        error: error === 'none' ? undefined : error?.slice(1, -1),
        description: field(/^- Description: `(.+)`$/m),
        when: /^\*\*When:\*\* \S/m.test(section),
        check: /^\*\*Check:\*\* \S/m.test(section),
      }
    })
}

const documented = parseSections(page)
const codes = Object.keys(GUARD_ERRORS) as GuardErrorCode[]

describe('docs/errors.md matches GUARD_ERRORS', () => {
  it('documents every code once, in registry order, and nothing else', () => {
    assert.deepEqual(
      documented.map((d) => d.code),
      codes,
    )
  })

  for (const code of codes) {
    it(code, () => {
      const doc = documented.find((d) => d.code === code)
      assert.ok(doc, `${code} is not documented`)
      const { status, error, description } = GUARD_ERRORS[code]
      assert.deepEqual(
        {
          status: doc.status,
          error: doc.error,
          description: doc.description,
          when: doc.when,
          check: doc.check,
        },
        { status, error, description, when: true, check: true },
      )
    })
  }
})

describe('GuardError reads the registry', () => {
  for (const code of codes) {
    it(code, () => {
      const error = new GuardError(code, 'the detail')
      const entry = GUARD_ERRORS[code]
      assert.deepEqual(
        [error.status, error.oauthError, error.publicDescription, error.message, error.detail],
        [entry.status, entry.error, entry.description, `${entry.description}: the detail`, 'the detail'],
      )
    })
  }
})
