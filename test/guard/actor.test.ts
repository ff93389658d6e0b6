import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createGuard, type Guard } from '../../src/guard/index.ts'
import { capturingLogger } from '../support/capturing_logger.ts'
import { startTestIdp, type TestIdp } from '../support/idp.ts'

const RESOURCE = 'https://mcp.example.com/mcp'

describe('guard: who a token acts for (VerifiedToken.actor)', () => {
  let idp: TestIdp
  let guard: Guard
  before(async () => {
    idp = await startTestIdp({ resources: { [RESOURCE]: 'mcp' } })
    guard = await createGuard({
      resource: RESOURCE,
      authorizationServers: [{ issuer: idp.issuer }],
      logger: capturingLogger(),
    })
  })
  after(() => idp.close())

  const signed = (claims: Record<string, unknown>) => {
    const now = Math.floor(Date.now() / 1000)
    return idp.sign({ iss: idp.issuer, aud: RESOURCE, iat: now, exp: now + 60, ...claims })
  }

  it('a client credentials token from oidc-provider (sub = client_id) acts for the client', async () => {
    const token = await guard.verifyToken(await idp.issueToken({ scope: 'mcp' }))
    assert.equal(token.subject, token.clientId)
    assert.equal(token.actor, 'client')
  })

  it('gty client_credentials (Gatehouse) or client-credentials (Auth0) acts for the client', async () => {
    for (const gty of ['client_credentials', 'client-credentials']) {
      const token = await guard.verifyToken(await signed({ sub: 'svc@clients', client_id: 'svc', gty }))
      assert.equal(token.actor, 'client', gty)
    }
  })

  it('a user token, and one whose gty names another grant, act for the user', async () => {
    for (const extra of [{}, { gty: 'password' }, { gty: ['client_credentials'] }]) {
      const token = await guard.verifyToken(await signed({ sub: 'alice', client_id: 'app', ...extra }))
      assert.equal(token.actor, 'user', JSON.stringify(extra))
    }
  })
})
