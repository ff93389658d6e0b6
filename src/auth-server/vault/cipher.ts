import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { AuthServerError } from '../errors.ts'

/** One encryption key of the vault: 32 random bytes under a short name stored beside each row it sealed. */
export interface VaultKey {
  id: string
  key: Buffer
}

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/
const FORMAT = 'v1'

/**
 * Reads the vault's keys: `<id>:<base64 of 32 bytes>` entries separated by commas or new lines (a variable or
 * a key file), the newest first. Made with: `echo "$(date +%Y%m%d):$(openssl rand -base64 32)"`.
 */
export function parseVaultKeys(text: string, where: string): VaultKey[] {
  const entries = text
    .split(/[,\n]/)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '' && !entry.startsWith('#'))
  if (entries.length === 0) throw new AuthServerError('vault_key_invalid', `${where} holds no key`)
  const seen = new Set<string>()
  return entries.map((entry, index) => {
    const colon = entry.indexOf(':')
    const id = entry.slice(0, colon)
    const key = Buffer.from(entry.slice(colon + 1), 'base64')
    // The entry itself is never echoed: it is a key.
    const which = `${where}, entry ${index + 1}`
    if (colon === -1 || !KEY_ID.test(id))
      throw new AuthServerError(
        'vault_key_invalid',
        `${which}: must be <id>:<base64 key>, the id 1 to 32 of A-Z a-z 0-9 _ -`,
      )
    if (key.length !== 32)
      throw new AuthServerError(
        'vault_key_invalid',
        `${which} (${id}): the key must be 32 bytes in base64 (openssl rand -base64 32), got ${key.length}`,
      )
    if (seen.has(id)) throw new AuthServerError('vault_key_invalid', `${which}: key id ${id} is given twice`)
    seen.add(id)
    return { id, key }
  })
}

/**
 * AES-256-GCM for the vault's rows. The newest key seals; every key opens, so a new key is added in front and
 * the old ones stay until `gatehouse connections rekey` has re-sealed their rows. The associated data binds a
 * ciphertext to its row (user, connection, key id): copied onto another user's row it does not open.
 */
export class VaultCipher {
  readonly #keys: ReadonlyMap<string, Buffer>
  readonly current: string

  constructor(keys: readonly VaultKey[]) {
    const [newest] = keys
    if (!newest) throw new AuthServerError('vault_key_invalid', 'the token vault needs at least one key')
    this.current = newest.id
    this.#keys = new Map(keys.map(({ id, key }) => [id, key]))
  }

  seal(clear: string, row: string): { sealed: string; keyId: string } {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.current) as Buffer, iv)
    cipher.setAAD(aad(row, this.current))
    const body = Buffer.concat([cipher.update(clear, 'utf8'), cipher.final()])
    const sealed = [FORMAT, iv, cipher.getAuthTag(), body]
      .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
      .join('.')
    return { sealed, keyId: this.current }
  }

  /** Fails closed: an unknown key id, a wrong key or a tampered row is an error, never a guess. */
  open(sealed: string, keyId: string, row: string): string {
    const key = this.#keys.get(keyId)
    if (!key)
      throw new AuthServerError(
        'vault_key_unknown',
        `${row} was sealed with key ${keyId}, which is not among the configured vault keys; add it back`,
      )
    const [format, iv, tag, body] = sealed.split('.')
    if (format !== FORMAT || !iv || !tag || body === undefined)
      throw new AuthServerError('vault_unreadable', `${row}: unknown format`)
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'))
      decipher.setAAD(aad(row, keyId))
      decipher.setAuthTag(Buffer.from(tag, 'base64url'))
      return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
        'utf8',
      )
    } catch {
      throw new AuthServerError(
        'vault_unreadable',
        `${row} does not decrypt with vault key ${keyId}: the key differs from the one that sealed it, or the row was altered`,
      )
    }
  }
}

const aad = (row: string, keyId: string) => Buffer.from(`gatehouse vault\0${row}\0${keyId}`)
