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
import { recordAudit } from './audit.ts'
import { AuthServerError } from './errors.ts'
import { resolveTtl } from './options.ts'

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
    throw new AuthServerError('signing_key_unreadable', `signing key ${key.kid}: unknown format`)
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
    throw new AuthServerError(
      'signing_key_unreadable',
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

/** Clock skew allowed on top of a token lifetime before its key may leave the JWKS. */
const SKEW_SECONDS = 60
/** How often a running server re-asserts that the key it signs with must stay published. */
const RETAIN_EVERY_MS = 60_000

/**
 * The longest a token signed with a key can stay valid after it was signed: JWT access tokens (client
 * credentials included) and ID tokens, plus clock skew. A key must stay published at least this long after
 * its last signature. Refresh tokens and codes are opaque, so they do not count.
 */
export function signedTokenLifetimeSeconds(ttl: { accessToken: number; idToken: number }): number {
  return Math.max(ttl.accessToken, ttl.idToken) + SKEW_SECONDS
}

/** Keeps the key this server signs with published while it runs, should another instance rotate it out. */
export function retainWhileSigning(
  store: Store,
  kid: string,
  lifetimeSeconds: number,
  everyMs = RETAIN_EVERY_MS,
): () => void {
  const timer = setInterval(() => {
    store.keys.retain(kid, Date.now() + lifetimeSeconds * 1000).catch(() => {
      // The next tick tries again; the key stays published until its current retire_after at least.
    })
  }, everyMs)
  timer.unref()
  return () => clearInterval(timer)
}

export interface RotateOptions {
  alg?: SigningAlgorithm
  /**
   * The longest token lifetime signed with the previous key ({@link signedTokenLifetimeSeconds}); the
   * previous key stays published at least this long. Default: the default lifetimes (600 s) plus skew.
   */
  minimumKeepSeconds?: number
  /** How long the previous key stays published, raised to `minimumKeepSeconds`. Default 1 day. */
  keepPreviousForSeconds?: number
  /** The administrator who rotated it in the console, for the audit event. */
  by?: string
}

export interface Rotation {
  kid: string
  alg: SigningAlgorithm
  /** The keys that stopped signing, published until `retireAfter` (extended while a server still signs). */
  retired: { kid: string; alg: string }[]
  retireAfter: number
}

/**
 * Adds a new signing key and makes it the active one; the previous key stays in the JWKS until its tokens
 * have expired, however short `keepPreviousForSeconds` is. Running servers pick the new key up on their next
 * start and keep the old one published until then ({@link retainWhileSigning}). Refuses a secret that cannot
 * decrypt the stored keys: a key encrypted with another secret would stop the next start.
 */
export async function rotateSigningKey(
  store: Store,
  secret: string,
  options: RotateOptions = {},
): Promise<Rotation> {
  const existing = await store.keys.list()
  if (existing.length === 0) {
    throw new AuthServerError(
      'signing_key_missing',
      'there is no signing key to rotate yet: the server creates the first one on its first start',
    )
  }
  for (const key of existing) decryptJwk(key, secret)
  const minimum = options.minimumKeepSeconds ?? signedTokenLifetimeSeconds(resolveTtl())
  const keep = Math.max(options.keepPreviousForSeconds ?? 86_400, minimum)
  const alg = options.alg ?? 'ES256'
  const jwk = generateJwk(alg)
  await insertKey(store, jwk, secret, 'retired')
  const retireAfter = Date.now() + keep * 1000
  await store.keys.activate(jwk.kid, retireAfter)
  const retired = existing.filter((key) => key.state === 'active').map(({ kid, alg }) => ({ kid, alg }))
  await recordAudit(store, 'key.rotated', {
    kid: jwk.kid,
    alg,
    retired: retired.map((key) => key.kid),
    ...(options.by ? { by: options.by } : {}),
  })
  return { kid: jwk.kid, alg, retired, retireAfter }
}
