import {
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  hkdfSync,
  type JsonWebKey,
  randomBytes,
  randomUUID,
} from 'node:crypto'
import type { SigningKey, Store } from '../storage/store.ts'

export type SigningAlgorithm = 'ES256' | 'EdDSA' | 'RS256'

/** A private JWK with the fields `oidc-provider` needs to pick it. */
export type PrivateJwk = JsonWebKey & { kid: string; alg: SigningAlgorithm; use: 'sig' }

const KEY_FORMAT = 'v1'

/** A 32-byte key for one purpose, derived from the operator's secret (HKDF-SHA256). */
export function deriveKey(secret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'gatehouse', `gatehouse ${purpose}`, 32))
}

/** AES-256-GCM, the kid as associated data so a ciphertext cannot be moved to another key row. */
export function encryptJwk(jwk: PrivateJwk, secret: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', deriveKey(secret, 'signing keys'), iv)
  cipher.setAAD(Buffer.from(jwk.kid))
  const sealed = Buffer.concat([cipher.update(JSON.stringify(jwk)), cipher.final()])
  return [KEY_FORMAT, iv, cipher.getAuthTag(), sealed]
    .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
    .join('.')
}

export function decryptJwk(key: SigningKey, secret: string): PrivateJwk {
  const [format, iv, tag, sealed] = key.encryptedJwk.split('.')
  if (format !== KEY_FORMAT || !iv || !tag || !sealed)
    throw new Error(`signing key ${key.kid}: unknown format`)
  try {
    const decipher = createDecipheriv(
      'aes-256-gcm',
      deriveKey(secret, 'signing keys'),
      Buffer.from(iv, 'base64url'),
    )
    decipher.setAAD(Buffer.from(key.kid))
    decipher.setAuthTag(Buffer.from(tag, 'base64url'))
    const clear = Buffer.concat([decipher.update(Buffer.from(sealed, 'base64url')), decipher.final()])
    return JSON.parse(clear.toString()) as PrivateJwk
  } catch {
    throw new Error(
      `signing key ${key.kid} cannot be decrypted: the secret differs from the one it was stored with. ` +
        'Restore the previous secret, or rotate to a new key with the new secret once the old tokens have expired.',
    )
  }
}

export function generateJwk(alg: SigningAlgorithm): PrivateJwk {
  const { privateKey } =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg, use: 'sig' }
}

async function insertKey(store: Store, jwk: PrivateJwk, secret: string, state: SigningKey['state']) {
  await store.keys.insert({
    kid: jwk.kid,
    alg: jwk.alg,
    encryptedJwk: encryptJwk(jwk, secret),
    state,
    createdAt: Date.now(),
    retireAfter: undefined,
  })
}

/**
 * The keys to publish, the signing key first. On first start (no active key) one is generated. When several
 * instances race on first start, the oldest active key signs everywhere and the others are only published.
 */
export async function loadSigningKeys(
  store: Store,
  secret: string,
  alg: SigningAlgorithm,
): Promise<PrivateJwk[]> {
  const now = Date.now()
  await store.keys.deleteExpired(now)
  let keys = await store.keys.list()
  if (!keys.some((key) => key.state === 'active')) {
    try {
      await insertKey(store, generateJwk(alg), secret, 'active')
    } catch (error) {
      // The store allows one active key: losing that race to another instance is fine, its key is used.
      keys = await store.keys.list()
      if (!keys.some((key) => key.state === 'active')) throw error
    }
    keys = await store.keys.list()
  }
  const order = (key: SigningKey) => (key.state === 'active' ? 0 : 1)
  return keys
    .filter((key) => key.state === 'active' || (key.retireAfter ?? 0) > now)
    .sort((a, b) => order(a) - order(b) || a.createdAt - b.createdAt || a.kid.localeCompare(b.kid))
    .map((key) => decryptJwk(key, secret))
}

export interface RotateOptions {
  alg?: SigningAlgorithm
  /**
   * How long the previous key stays published: at least the longest token lifetime signed with it (access
   * and ID tokens). Default 1 day.
   */
  keepPreviousForSeconds?: number
}

/**
 * Adds a new signing key and makes it the active one; the previous key stays in the JWKS until its tokens
 * have expired. Running servers pick the new key up on their next start.
 */
export async function rotateSigningKey(
  store: Store,
  secret: string,
  options: RotateOptions = {},
): Promise<string> {
  const jwk = generateJwk(options.alg ?? 'ES256')
  await insertKey(store, jwk, secret, 'retired')
  await store.keys.activate(jwk.kid, Date.now() + (options.keepPreviousForSeconds ?? 86_400) * 1000)
  return jwk.kid
}
