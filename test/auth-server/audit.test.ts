import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { AUDIT_RETENTION, recordAudit } from '../../src/auth-server/audit.ts'
import { openStore } from '../../src/storage/index.ts'
import { eventually } from '../support/eventually.ts'
import { basic, connect, type Harness, registerPublicClient, startAuthServer, token } from './harness.ts'

/** The provider's events are written after its answer: wait until the store has them. */
const written = <T>(read: () => Promise<T | undefined>) => eventually('the event to be written', read)

describe('audit events: token issuance and refusals by reason, retention', () => {
  let h: Harness
  before(async () => {
    h = await startAuthServer()
  })
  after(() => h?.close())

  const find = (type: string, where: (data: Record<string, unknown>) => boolean) => async () =>
    (await h.store.audit.recent(50)).find((event) => event.type === type && where(event.data))

  test('a token issued is an event, and the client’s last use; a refusal is an event with its OAuth error code', async () => {
    const issued = await token(
      h,
      { grant_type: 'client_credentials', resource: h.resource },
      basic('machine', 'machine-secret-machine-secret'),
    )
    assert.equal(issued.response.status, 200)
    const event = await written(find('token.issued', (data) => data.clientId === 'machine'))
    assert.equal(event.data.grantType, 'client_credentials')
    assert.ok(!JSON.stringify(event).includes(issued.body.access_token as string), 'no token in the event')
    assert.ok((await written(async () => (await h.store.clientUsage.list()).get('machine'))) > 0)

    const refused = await token(h, {
      grant_type: 'refresh_token',
      refresh_token: 'made-up',
      client_id: 'nobody',
    })
    assert.equal(refused.response.status, 401)
    const refusal = await written(find('token.refused', (data) => data.reason === 'invalid_client'))
    assert.equal(refusal.data.grantType, 'refresh_token')
    assert.ok(!JSON.stringify(refusal).includes('made-up'), 'nothing the request sent is kept')
  })

  test('a code redemption and a refresh each write one token.issued event, in the transaction that issues', async () => {
    const clientId = await registerPublicClient(h)
    const connected = await connect(h, clientId)
    const refreshed = await token(h, {
      grant_type: 'refresh_token',
      refresh_token: connected.refresh_token as string,
      client_id: clientId,
    })
    assert.equal(refreshed.response.status, 200)
    // The provider's event is written after its answer, in order: once this one is there, a second event of
    // the redemption or the refresh would be too.
    await token(
      h,
      { grant_type: 'client_credentials', resource: h.resource },
      basic('machine', 'machine-secret-machine-secret'),
    )
    await written(find('token.issued', (data) => data.clientId === 'machine'))
    const events = (await h.store.audit.recent(50)).filter((event) => event.data.clientId === clientId)
    assert.deepEqual(
      events.map((event) => [event.type, event.data.grantType, typeof event.data.userId]).reverse(),
      [
        ['token.issued', 'authorization_code', 'string'],
        ['token.issued', 'refresh_token', 'string'],
      ],
    )
  })

  test('recordAudit deletes the events past the retention: at its first event on a store, then hourly', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-audit-'))
    const store = await openStore(undefined, { dataDir })
    try {
      const now = Math.floor(Date.now() / 1000)
      await store.audit.append({
        at: now - AUDIT_RETENTION.seconds - 60,
        type: 'login.failed',
        data: { old: true },
      })
      await recordAudit(store, 'login.failed', { first: true })
      assert.deepEqual(
        (await store.audit.recent(10)).map((event) => event.data),
        [{ first: true }],
        'the old event is gone',
      )
      await store.audit.append({
        at: now - AUDIT_RETENTION.seconds - 60,
        type: 'login.failed',
        data: { old: true },
      })
      await recordAudit(store, 'login.failed', { second: true })
      assert.equal((await store.audit.recent(10)).length, 3, 'within the hour: no second prune')
    } finally {
      await store.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
