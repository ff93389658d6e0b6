import assert from 'node:assert/strict'
import { readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { decodeProtectedHeader } from 'jose'
import type { Gateway } from '../../src/gateway/server.ts'
import { basic, token } from '../auth-server/harness.ts'
import { asHarness, gatehouse, startEmbeddedGateway, tempDir } from '../support/embedded-gateway.ts'

const MACHINE = { client_id: 'ci-bot', client_secret: 'ci-bot-secret-ci-bot-secret-0123' }
const FILE = {
  authorization_server: {
    clients: [
      {
        ...MACHINE,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: 'mcp',
      },
    ],
  },
}

async function machineToken(gateway: Gateway): Promise<string> {
  const { response, body } = await token(
    asHarness(gateway),
    { grant_type: 'client_credentials', scope: 'mcp', resource: gateway.resource },
    basic(MACHINE.client_id, MACHINE.client_secret),
  )
  assert.equal(response.status, 200, JSON.stringify(body))
  return body.access_token as string
}

const passes = async (gateway: Gateway, accessToken: string) => {
  const result = await gateway.guard.check(
    new Request(gateway.resource, { method: 'POST', headers: { authorization: `Bearer ${accessToken}` } }),
  )
  return result.ok ? 'ok' : result.error.code
}

describe('the data directory: secret and signing keys across restarts', () => {
  let dataDir: string
  let gateway: Gateway | undefined

  before(async () => {
    dataDir = await tempDir('keys')
  })
  afterEach(async () => {
    await gateway?.close()
    gateway = undefined
  })
  after(async () => {
    await rm(dataDir, { recursive: true, force: true })
  })

  it('creates the secret 0600 in a 0700 directory, reuses it, and keeps old tokens valid after keys rotate', async () => {
    const dir = join(dataDir, 'state')
    gateway = await startEmbeddedGateway({ dataDir: dir }, FILE)
    assert.equal((await stat(dir)).mode & 0o777, 0o700)
    assert.equal((await stat(join(dir, 'secret'))).mode & 0o777, 0o600)
    const secret = await readFile(join(dir, 'secret'), 'utf8')
    const before = await machineToken(gateway)
    const port = new URL(gateway.resource).port
    await gateway.close()
    gateway = undefined

    const rotated = await gatehouse(['keys', 'rotate', '--alg', 'EdDSA', '--data-dir', dir])
    assert.equal(rotated.code, 0, rotated.stderr)
    const kid = /signing key ([0-9a-f-]{36})/.exec(rotated.stdout)?.[1]
    assert.ok(kid, rotated.stdout)
    const listed = await gatehouse(['keys', 'list', '--data-dir', dir])
    assert.match(listed.stdout, new RegExp(`^${kid} +EdDSA +active +\\S+Z +-$`, 'm'))
    assert.match(
      listed.stdout,
      new RegExp(`^${decodeProtectedHeader(before).kid} +ES256 +retired +\\S+Z +\\S+Z$`, 'm'),
    )
    const json: Record<string, unknown>[] = JSON.parse(
      (await gatehouse(['keys', 'list', '--json', '--data-dir', dir])).stdout,
    )
    const listedKey = (id: unknown) => json.find((key) => key.kid === id)
    assert.deepEqual(listedKey(kid), {
      ...listedKey(kid),
      alg: 'EdDSA',
      state: 'active',
      published_until: null,
    })
    assert.match(String(listedKey(decodeProtectedHeader(before).kid)?.published_until), /^\d{4}-\S+Z$/)

    // Same origin, so the same issuer and resource: a restart of the one instance.
    gateway = await startEmbeddedGateway({ dataDir: dir, port }, FILE)
    assert.equal(await readFile(join(dir, 'secret'), 'utf8'), secret)
    const after = await machineToken(gateway)
    assert.deepEqual(decodeProtectedHeader(after), { alg: 'EdDSA', kid, typ: 'at+jwt' })
    assert.equal(await passes(gateway, before), 'ok')
    assert.equal(await passes(gateway, after), 'ok')
  })

  it('keeps the previous key for the longest token lifetime although --keep-previous says 1, and says so', async () => {
    const dir = join(dataDir, 'short-keep')
    gateway = await startEmbeddedGateway({ dataDir: dir }, FILE)
    const before = await machineToken(gateway)
    const port = new URL(gateway.resource).port
    await gateway.close()
    gateway = undefined
    const rotated = await gatehouse(['keys', 'rotate', '--keep-previous', '1', '--data-dir', dir])
    assert.equal(rotated.code, 0, rotated.stderr)
    assert.match(
      rotated.stdout,
      /--keep-previous 1 is shorter than the longest token lifetime \(660 s with skew\): using 660 s/,
    )
    assert.match(
      rotated.stdout,
      /previous ES256 key [0-9a-f-]{36} stays published until at least \S+, and while a running server still signs with it/,
    )
    await new Promise((resolve) => setTimeout(resolve, 1500))
    gateway = await startEmbeddedGateway({ dataDir: dir, port }, FILE)
    assert.equal(await passes(gateway, before), 'ok')
  })

  it('refuses to rotate without the secret gatehouse serve uses, and writes nothing', async () => {
    const dir = join(dataDir, 'env-secret')
    const secret = 'the-secret-gatehouse-serve-was-given-0123'
    gateway = await startEmbeddedGateway({ dataDir: dir }, { ...FILE, secret })
    await gateway.close()
    gateway = undefined
    const keys = await gatehouse(['keys', 'list', '--data-dir', dir])

    const missing = await gatehouse(['keys', 'rotate', '--data-dir', dir])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /no secret: .*secret does not exist; give the GATEHOUSE_SECRET/)
    await assert.rejects(stat(join(dir, 'secret')), { code: 'ENOENT' })

    const wrong = await gatehouse(['keys', 'rotate', '--data-dir', dir], '', {
      GATEHOUSE_SECRET: 'not-the-secret-gatehouse-serve-was-given',
    })
    assert.equal(wrong.code, 1)
    assert.match(wrong.stderr, /cannot rotate: signing key .* cannot be decrypted/)
    assert.equal((await gatehouse(['keys', 'list', '--data-dir', dir])).stdout, keys.stdout)

    // The server itself stops in one line too (a registry error, signing_key_unreadable), not with a stack.
    const serve = await gatehouse(
      ['serve', '--port', '0', '--data-dir', dir, '--', 'node', 'server.js'],
      '',
      {
        GATEHOUSE_SECRET: 'not-the-secret-gatehouse-serve-was-given',
      },
    )
    assert.equal(serve.code, 1)
    assert.match(
      serve.stderr,
      /^gatehouse: signing key \S+ cannot be decrypted: the secret differs [^\n]+\n$/,
    )

    const right = await gatehouse(['keys', 'rotate', '--data-dir', dir], '', { GATEHOUSE_SECRET: secret })
    assert.equal(right.code, 0, right.stderr)
    gateway = await startEmbeddedGateway({ dataDir: dir }, { ...FILE, secret })
  })

  it('refuses an unknown algorithm in one line', async () => {
    const refused = await gatehouse(['keys', 'rotate', '--alg', 'HS256', '--data-dir', dataDir])
    assert.equal(refused.code, 1)
    assert.equal(refused.stderr, 'gatehouse: --alg HS256 must be one of ES256, EdDSA, RS256\n')
  })
})
