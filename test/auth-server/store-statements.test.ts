import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { statementsOf } from '../support/sql_statements.ts'
import {
  authorize,
  authorizeUrl,
  browse,
  connect,
  type Harness,
  pkce,
  randomLoopbackCallback,
  registerPublicClient,
  startAuthServer,
  token,
} from './harness.ts'

const BASE_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA = `gh_statements_${randomBytes(6).toString('hex')}`

after(async () => {
  const client = new pg.Client({ connectionString: BASE_URL })
  await client.connect()
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  } finally {
    await client.end()
  }
})

/** Statements that write outside an explicit transaction commit on their own. */
function commits(sent: string[]): number {
  let open = false
  let count = 0
  for (const sql of sent) {
    if (sql === 'BEGIN IMMEDIATE') open = true
    else if (sql === 'COMMIT') {
      open = false
      count++
    } else if (!open && /^(INSERT|UPDATE|DELETE|WITH)\b/.test(sql)) count++
  }
  return count
}

for (const [backend, storageUrl, most] of [
  // SQLite: a transaction is BEGIN, its statements and COMMIT, each a call; PostgreSQL: one round trip, and
  // the rate limit's count is made in the read.
  ['SQLite', undefined, { statements: 9, commits: 2, authorizeCommits: 6 }],
  ['PostgreSQL', `${BASE_URL}?schema=${SCHEMA}`, { statements: 3, commits: 2, authorizeCommits: 6 }],
] as const) {
  describe(`the SQL of a token request (${backend})`, () => {
    let h: Harness
    let clientId: string
    const setUp = async () => {
      h ??= await startAuthServer({ storageUrl })
      clientId ??= await registerPublicClient(h)
      // A first redemption and refresh, so that what runs once per process or per client is done.
      const { refresh_token } = await connect(h, clientId)
      await token(h, {
        grant_type: 'refresh_token',
        refresh_token: refresh_token as string,
        client_id: clientId,
      })
    }
    after(() => h?.close())

    test(`a code redemption: the rate limit, the registered client, one read (code, grant and user), one transaction (code consumed, refresh token and audit event stored); at most ${most.statements} statements`, async () => {
      await setUp()
      const { code, redirectUri, verifier } = await authorize(h, clientId)
      let body: Record<string, unknown> = {}
      const sent = await statementsOf(async () => {
        ;({ body } = await token(h, {
          grant_type: 'authorization_code',
          code,
          redirect_uri: redirectUri,
          code_verifier: verifier,
          client_id: clientId,
          resource: h.resource,
        }))
      })
      assert.ok(body.refresh_token, JSON.stringify(body))
      assert.ok(sent.length <= most.statements, sent.join('\n'))
      assert.equal(commits(sent), most.commits, sent.join('\n'))
      assert.equal(sent.filter((sql) => sql.includes('audit_events')).length, 1, 'the audit event once')
    })

    test(`an authorization (sign-in and consent): each resume at /authorize writes in one transaction; at most ${most.authorizeCommits} commits`, async () => {
      await setUp()
      let code: string | undefined
      const sent = await statementsOf(async () => {
        ;({ code } = await authorize(h, clientId))
      })
      assert.ok(code)
      // The provider writes the interaction (twice), the session, the grant, the code: 11 writes, one by one
      // before. Each page of the development interactions still writes on its own.
      assert.ok(commits(sent) <= most.authorizeCommits, sent.join('\n'))
    })

    test(`a refresh: the rate limit, the registered client, one read (token, grant and user), one transaction (rotation and audit event); at most ${most.statements} statements`, async () => {
      await setUp()
      const { refresh_token } = await connect(h, clientId)
      let body: Record<string, unknown> = {}
      const sent = await statementsOf(async () => {
        ;({ body } = await token(h, {
          grant_type: 'refresh_token',
          refresh_token: refresh_token as string,
          client_id: clientId,
        }))
      })
      assert.ok(body.refresh_token, JSON.stringify(body))
      assert.ok(sent.length <= most.statements, sent.join('\n'))
      assert.equal(commits(sent), most.commits, sent.join('\n'))
      assert.equal(sent.filter((sql) => sql.includes('audit_events')).length, 1, 'the audit event once')
    })
  })
}

describe('an authorization whose deferred writes fail (PostgreSQL)', () => {
  const schema = `${SCHEMA}_fail`
  let h: Harness
  let admin: pg.Client
  after(async () => {
    await h?.close()
    await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await admin?.end()
  })

  test('no redirect, nothing of it stored, and the next authorization works', async () => {
    h = await startAuthServer({ storageUrl: `${BASE_URL}?schema=${schema}` })
    const clientId = await registerPublicClient(h)
    await connect(h, clientId)
    admin = new pg.Client({ connectionString: BASE_URL })
    await admin.connect()
    const rows = async (model: string) =>
      Number(
        (await admin.query(`SELECT count(*) AS n FROM ${schema}.oidc_records WHERE model = $1`, [model]))
          .rows[0].n,
      )
    // A real failure inside the one transaction: the database refuses the code's insert.
    await admin.query(`CREATE FUNCTION ${schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$`)
    await admin.query(`CREATE TRIGGER refuse_codes BEFORE INSERT ON ${schema}.oidc_records FOR EACH ROW
      WHEN (NEW.model = 'AuthorizationCode') EXECUTE FUNCTION ${schema}.refuse()`)
    const codesBefore = await rows('AuthorizationCode')
    const challenge = pkce()
    const response = await browse(
      authorizeUrl(h, {
        client_id: clientId,
        response_type: 'code',
        redirect_uri: randomLoopbackCallback(),
        scope: 'mcp:read',
        resource: h.resource,
        state: 'st',
        code_challenge: challenge.challenge,
        code_challenge_method: 'S256',
      }),
    )
    assert.ok(response.status >= 500, `status ${response.status}`)
    assert.equal(response.headers.get('location'), null, 'the browser is not sent on')
    assert.equal(await rows('AuthorizationCode'), codesBefore, 'no code stored')
    await admin.query(`DROP TRIGGER refuse_codes ON ${schema}.oidc_records`)
    const { code } = await authorize(h, clientId)
    assert.ok(code, 'the service is up and writes again')
  })
})
