import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { OidcAdapter, Store, User } from '../../storage/store.ts'
import { normalizeUsername } from '../../storage/store.ts'
import { constantTimeEqual, InteractionCookie } from '../interactions/security.ts'

/** A console session ends after this long without a request, and after {@link SESSION_MAX_SECONDS} anyway. */
export const SESSION_IDLE_SECONDS = 30 * 60
export const SESSION_MAX_SECONDS = 8 * 3600
/** The idle deadline is moved at most this often: a page view costs no write. */
const TOUCH_INTERVAL_SECONDS = 60

export interface AdminSession {
  user: User
  /** The CSRF token of every form of this session. */
  csrf: string
}

interface SessionRecord {
  accountId: string
  csrf: string
  createdAt: number
  touchedAt: number
}

const now = () => Math.floor(Date.now() / 1000)
const COOKIE_VALUE = /^[\w-]{43}$/
/** The store is keyed by a digest: reading the table gives no usable cookie. */
const recordId = (cookie: string) => createHash('sha256').update(cookie).digest('base64url')

/**
 * The console's own session, after a sign-in at the authorization server: a random cookie (HttpOnly,
 * SameSite=Strict, `__Host-` and Secure on https), its digest kept in the store with the account and a CSRF
 * token. Each request checks that the account still exists, is enabled and is still an administrator.
 */
export class AdminSessions {
  readonly #records: OidcAdapter
  readonly #cookie: InteractionCookie
  readonly #store: Store
  readonly #admins: ReadonlySet<string>

  constructor(store: Store, issuer: string, admins: readonly string[]) {
    this.#store = store
    this.#records = store.oidcAdapter('GatehouseConsoleSession')
    this.#cookie = new InteractionCookie(issuer, 'gatehouse-admin', 'Strict')
    this.#admins = new Set(admins.map(normalizeUsername))
  }

  isAdmin(user: User | undefined): user is User {
    return user !== undefined && user.disabledAt === undefined && this.#admins.has(user.username)
  }

  async start(res: ServerResponse, user: User): Promise<void> {
    const cookie = randomBytes(32).toString('base64url')
    const at = now()
    const record: SessionRecord = {
      accountId: user.id,
      csrf: randomBytes(32).toString('base64url'),
      createdAt: at,
      touchedAt: at,
    }
    await this.#records.upsert(recordId(cookie), { ...record }, SESSION_IDLE_SECONDS)
    this.#cookie.set(res, cookie, SESSION_MAX_SECONDS)
  }

  /** The session of this request, or undefined: no cookie, a forged or expired one, or no longer an admin. */
  async find(req: IncomingMessage): Promise<AdminSession | undefined> {
    const cookie = this.#cookie.read(req)
    if (!cookie || !COOKIE_VALUE.test(cookie)) return undefined
    const id = recordId(cookie)
    const record = (await this.#records.find(id)) as SessionRecord | undefined
    const at = now()
    if (!record || record.createdAt + SESSION_MAX_SECONDS <= at) return undefined
    const user = await this.#store.users.findById(record.accountId)
    if (!this.isAdmin(user)) return undefined
    if (record.touchedAt + TOUCH_INTERVAL_SECONDS <= at) {
      const left = Math.min(SESSION_IDLE_SECONDS, record.createdAt + SESSION_MAX_SECONDS - at)
      await this.#records.upsert(id, { ...record, touchedAt: at }, left)
    }
    return { user, csrf: record.csrf }
  }

  async end(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const cookie = this.#cookie.read(req)
    if (cookie && COOKIE_VALUE.test(cookie)) await this.#records.destroy(recordId(cookie))
    this.#cookie.clear(res)
  }
}

/** A submitted CSRF token against the session's. */
export function csrfMatches(session: AdminSession, submitted: string | null): boolean {
  return typeof submitted === 'string' && submitted !== '' && constantTimeEqual(session.csrf, submitted)
}
