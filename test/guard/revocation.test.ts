import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createGuard, type Guard, type VerifiedToken } from '../../src/guard/index.ts'
import { capturingLogger } from '../support/capturing_logger.ts'
import { bearerRequest, expectCheck } from '../support/guard_check.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

const RESOURCE = 'https://mcp.example.com/mcp'

describe('guard: the isRevoked option', () => {
  let idp: TestIdp
  const revoked = new Set<string>()
  const seen: VerifiedToken[] = []
  let failing: Error | undefined
  let guard: Guard

  before(async () => {
    idp = await startTestIdp({ resources: { [RESOURCE]: 'files:read' } })
    guard = await createGuard({
      resource: RESOURCE,
      authorizationServers: [{ issuer: idp.issuer }],
      logger: capturingLogger(),
      isRevoked: async (token) => {
        seen.push(token)
        if (failing) throw failing
        return revoked.has(String(token.claims.jti))
      },
    })
  })
  after(() => idp.close())

  it('is asked with the verified token on every request, cached or not, and refuses with token_revoked', async () => {
    const token = await idp.issueToken({ scope: 'files:read' })
    await expectCheck(guard, bearerRequest(RESOURCE, token), 'accepted')
    await expectCheck(guard, bearerRequest(RESOURCE, token), 'accepted')
    assert.equal(seen.length, 2)
    assert.equal(seen[1]?.token, token)
    const jti = seen[1]?.claims.jti
    assert.equal(typeof jti, 'string')
    revoked.add(jti as string)
    // The verification cache still holds the token: the revocation applies all the same.
    await expectCheck(guard, bearerRequest(RESOURCE, token), 'token_revoked')
    await assert.rejects(guard.verifyToken(token), { code: 'token_revoked' })
  })

  it('a failing check refuses with 503 (fail closed), never a 500 or an accepted token', async () => {
    const token = await idp.issueToken({ scope: 'files:read' })
    failing = new Error('store unreachable')
    try {
      const result = await expectCheck(
        guard,
        bearerRequest(RESOURCE, token),
        'authorization_server_unavailable',
      )
      assert.ok(!result.ok)
      assert.equal(result.response.headers.get('retry-after'), '5')
    } finally {
      failing = undefined
    }
    await expectCheck(guard, bearerRequest(RESOURCE, token), 'accepted')
  })

  it('must be a function', async () => {
    await assert.rejects(
      createGuard({
        resource: RESOURCE,
        authorizationServers: [{ issuer: idp.issuer }],
        isRevoked: true as unknown as () => boolean,
      }),
      { code: 'config_invalid', message: /isRevoked must be a function/ },
    )
  })
})
