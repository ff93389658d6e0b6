import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto'
import { normalizeUsername, type Store, type User } from '../../storage/store.ts'
import { recordAudit } from '../audit.ts'
import { AuthServerError } from '../errors.ts'

export { normalizeUsername }

export const MIN_PASSWORD_LENGTH = 12
/** Long enough for passphrases, short enough that hashing one is not a denial of service. */
export const MAX_PASSWORD_LENGTH = 256
const USERNAME = /^[a-z0-9][a-z0-9._-]{0,63}$/

// scrypt with N = 2^15, r = 8 (32 MiB per hash): OWASP's minimum for scrypt.
const DEFAULT_COST = { logN: 15, r: 8, p: 1 }
const KEY_LENGTH = 32
const SALT_LENGTH = 16

function derive(
  password: string,
  salt: Buffer,
  cost: { logN: number; r: number; p: number },
): Promise<Buffer> {
  const N = 2 ** cost.logN
  const options: ScryptOptions = { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r }
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, KEY_LENGTH, options, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  )
}

/** `scrypt$ln=15,r=8,p=1$<salt>$<key>` (base64url): the parameters travel with the hash, so they can be raised later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_LENGTH)
  const key = await derive(password, salt, DEFAULT_COST)
  const { logN, r, p } = DEFAULT_COST
  return `scrypt$ln=${logN},r=${r},p=${p}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

const HASH = /^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d)\$([\w-]{16,})\$([\w-]{32,})$/

/** Constant-time comparison; a malformed or out-of-range hash never matches. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const match = HASH.exec(stored)
  if (!match) return false
  const [logN, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])]
  if (logN < 14 || logN > 20 || r < 1 || r > 16 || p < 1 || p > 4) return false
  const expected = Buffer.from(match[5] as string, 'base64url')
  const actual = await derive(password, Buffer.from(match[4] as string, 'base64url'), { logN, r, p })
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}

// Verified when the username is unknown, so that answer takes as long as a wrong password.
let decoyHash: Promise<string> | undefined
export function decoy(): Promise<string> {
  decoyHash ??= hashPassword(randomBytes(16).toString('hex'))
  return decoyHash
}

/** The rules of a password an administrator sets (`users add`, `users passwd`). */
export function checkNewPassword(password: string): void {
  if (typeof password !== 'string' || [...password].length < MIN_PASSWORD_LENGTH) {
    throw new AuthServerError(
      'password_invalid',
      `password must be at least ${MIN_PASSWORD_LENGTH} characters`,
    )
  }
  if (password.length > MAX_PASSWORD_LENGTH) {
    throw new AuthServerError(
      'password_invalid',
      `password must be at most ${MAX_PASSWORD_LENGTH} characters`,
    )
  }
}

/**
 * Creates a local account (for `gatehouse users add`). Usernames: 1 to 64 of `a-z 0-9 . _ -`, starting with a
 * letter or digit (case-insensitive); passwords: at least {@link MIN_PASSWORD_LENGTH} characters.
 */
export async function createLocalUser(
  store: Store,
  username: string,
  password: string,
  claims: Record<string, unknown> = {},
): Promise<User> {
  const name = normalizeUsername(username)
  if (!USERNAME.test(name)) {
    throw new AuthServerError(
      'username_invalid',
      `username ${JSON.stringify(username)} must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    )
  }
  checkNewPassword(password)
  if (await store.users.findByUsername(name))
    throw new AuthServerError('user_exists', `user ${name} already exists`)
  const user = await store.users.create({
    username: name,
    passwordHash: await hashPassword(password),
    externalId: undefined,
    claims: { preferred_username: name, ...claims },
  })
  await recordAudit(store, 'user.created', { userId: user.id, username: name })
  return user
}
