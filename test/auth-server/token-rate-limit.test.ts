import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, test } from 'node:test'
import pg from 'pg'
import { statementsOf } from '../support/sql_statements.ts'
import { basic, connect, registerPublicClient, startAuthServer, token } from './harness.ts'

const BASE_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA_PREFIX = `gh_token_limit_${randomBytes(6).toString('hex')}`
let schemas = 0
const postgresUrl = () => `${BASE_URL}?schema=${SCHEMA_PREFIX}_${++schemas}`

after(async () => {
  const client = new pg.Client({ connectionString: BASE_URL })
  await client.connect()
  try {
    const { rows } = await client.query('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [
      SCHEMA_PREFIX,
    ])
    for (const { nspname } of rows) await client.query(`DROP SCHEMA ${nspname} CASCADE`)
  } finally {
    await client.end()
  }
})

const WINDOW = 600

for (const [backend, storageUrl] of [
  ['SQLite', () => undefined],
  ['PostgreSQL', postgresUrl],
] as const) {
  test(`${backend}: a refresh over the limit is 429 and rotates nothing; then the address is refused without a statement`, async () => {
    const h = await startAuthServer({
      storageUrl: storageUrl(),
      overrides: { tokenRateLimit: { limit: 1, windowSeconds: WINDOW } },
    })
    try {
      const clientId = await registerPublicClient(h)
      // The one token request the limit allows (unless the window ends right after it: then retried once).
      let { refresh_token: refreshToken } = await connect(h, clientId)
      const refresh = () =>
        token(h, { grant_type: 'refresh_token', refresh_token: refreshToken as string, client_id: clientId })
      let refused = await refresh()
      if (refused.response.status === 200) {
        refreshToken = refused.body.refresh_token
        refused = await refresh()
      }
      assert.equal(refused.response.status, 429)
      assert.equal(refused.response.headers.get('retry-after'), String(WINDOW))
      assert.equal(refused.body.error, 'too_many_requests')
      const stored = await h.store.oidcAdapter('RefreshToken').find(refreshToken as string)
      assert.equal(stored?.consumed, undefined, 'the refresh token was not rotated')
      let again: Awaited<ReturnType<typeof refresh>> | undefined
      const sent = await statementsOf(async () => {
        again = await refresh()
      })
      assert.equal(again?.response.status, 429)
      assert.deepEqual(sent, [], 'refused by this instance, before the store or the provider')
    } finally {
      await h.close()
    }
  })
}

test('client credentials over the limit: 429, no token, and no token.issued event', async () => {
  const h = await startAuthServer({ overrides: { tokenRateLimit: { limit: 1, windowSeconds: WINDOW } } })
  try {
    const request = () =>
      token(
        h,
        { grant_type: 'client_credentials', resource: h.resource },
        basic('machine', 'machine-secret-machine-secret'),
      )
    assert.equal((await request()).response.status, 200)
    const refused = await request()
    assert.equal(refused.response.status, 429)
    assert.equal(refused.body.access_token, undefined)
    assert.equal(h.logger.entries.filter((entry) => entry.message === 'authorization server error').length, 0)
    const issued = (await h.store.audit.recent(50)).filter(
      (event) => event.type === 'token.issued' && event.data.clientId === 'machine',
    )
    assert.equal(issued.length, 1)
  } finally {
    await h.close()
  }
})

test('two instances on one PostgreSQL schema share the count, whichever path counts the request', async () => {
  const storageUrl = postgresUrl()
  const rate = { tokenRateLimit: { limit: 3, windowSeconds: WINDOW } }
  const first = await startAuthServer({ storageUrl, overrides: rate })
  const second = await startAuthServer({ storageUrl, overrides: rate })
  try {
    const guess = (h: typeof first) =>
      token(h, { grant_type: 'refresh_token', refresh_token: 'guessed', client_id: 'nobody' })
    const codeGuess = async (h: typeof first) =>
      token(h, {
        grant_type: 'authorization_code',
        code: 'guessed',
        redirect_uri: 'http://127.0.0.1/callback',
        code_verifier: 'v'.repeat(43),
        client_id: await registerPublicClient(h),
      })
    const statuses = [
      (await guess(first)).response.status, // counted after the provider answered
      (await codeGuess(second)).response.status, // counted with the code's read
      (await guess(second)).response.status,
      (await codeGuess(first)).response.status,
      (await guess(second)).response.status,
    ]
    assert.deepEqual(statuses, [401, 400, 401, 429, 429])
  } finally {
    await first.close()
    await second.close()
  }
})
