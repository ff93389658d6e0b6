import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { GUARD_ERRORS, GuardError, type GuardErrorCode } from '../../src/guard/index.ts'
import { documentedErrors } from '../support/errors-doc.ts'

// docs/errors.md and the registry must say the same thing (a drift test, as fastify does for Errors.md).

const documented = documentedErrors('Guard errors')
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
