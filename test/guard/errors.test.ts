import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { GUARD_ERRORS, GuardError, type GuardErrorCode } from '../../src/guard/index.ts'

// docs/errors.md is kept in step with this registry by test/errors.test.ts, with the other parts' registries.

const codes = Object.keys(GUARD_ERRORS) as GuardErrorCode[]

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
