import assert from 'node:assert/strict'
import { GUARD_ERRORS, type Guard, type GuardErrorCode, type GuardResult } from '../../src/guard/index.ts'

export const bearerRequest = (url: string, token: string): Request =>
  new Request(url, { headers: { authorization: `Bearer ${token}` } })

/**
 * Runs `guard.check` and asserts the outcome: `accepted`, or refusal with `code`, its registry status and,
 * for 401/403, a challenge carrying the registry's OAuth error and public description. Returns the result.
 */
export async function expectCheck(
  guard: Guard,
  request: Request,
  expected: GuardErrorCode | 'accepted',
): Promise<GuardResult> {
  const result = await guard.check(request)
  if (result.ok) {
    assert.equal('accepted', expected, 'the guard accepted the token')
    return result
  }
  assert.equal(result.error.code, expected, result.error.message)
  const { status, error, description } = GUARD_ERRORS[result.error.code]
  assert.equal(result.response.status, status)
  const challenge = result.response.headers.get('www-authenticate')
  if (error && (status === 401 || status === 403)) {
    assert.ok(
      challenge?.includes(`error="${error}", error_description="${description}"`),
      challenge ?? 'none',
    )
  }
  return result
}
