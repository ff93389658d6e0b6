import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { parseVaultKeys } from '../../src/auth-server/index.ts'
import { loadVaultKeys } from '../../src/cli/embedded_server.ts'

const dir = await mkdtemp(join(tmpdir(), 'gatehouse-vault-keys-'))
after(() => rm(dir, { recursive: true, force: true }))
const secret = randomBytes(32).toString('base64')
const settings = (file: string) => ({ connections: [], keys: { file }, refreshBeforeSeconds: 60 })

test('a key file readable by others is loaded with a warning; 0600 without', async () => {
  const file = join(dir, 'keys')
  await writeFile(file, `# newest first\nk2:${secret}\nk1:${randomBytes(32).toString('base64')}\n`)
  const warnings: unknown[] = []
  const logger = {
    warn: (message: string, fields?: unknown) => warnings.push({ message, fields }),
    info() {},
  }
  await chmod(file, 0o644)
  assert.deepEqual(
    (await loadVaultKeys(settings(file), logger)).map((key) => key.id),
    ['k2', 'k1'],
  )
  assert.equal(warnings.length, 1)
  assert.match(JSON.stringify(warnings[0]), /chmod 600.*"mode":"644"/)
  await chmod(file, 0o600)
  await loadVaultKeys(settings(file), logger)
  assert.equal(warnings.length, 1)
})

test('a missing key file stops with vault_keys_unreadable', async () => {
  await assert.rejects(loadVaultKeys(settings(join(dir, 'absent'))), { code: 'vault_keys_unreadable' })
})

test('malformed keys are refused by position, never echoing a key', () => {
  const refused = (text: string, message: RegExp) =>
    assert.throws(
      () => parseVaultKeys(text, 'GATEHOUSE_VAULT_KEYS'),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'vault_key_invalid')
        assert.match(error.message, message)
        assert.ok(!error.message.includes(secret.slice(0, 12)))
        return true
      },
    )
  refused('', /holds no key/)
  refused(secret, /entry 1: must be <id>:<base64 key>/)
  refused(`bad id:${secret}`, /entry 1: must be <id>:<base64 key>/)
  refused(`k1:${secret.slice(0, 20)}`, /entry 1 \(k1\): the key must be 32 bytes/)
  refused(`k1:${secret},k1:${secret}`, /entry 2: key id k1 is given twice/)
})
