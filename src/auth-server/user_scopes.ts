import type Provider from 'oidc-provider'
import { normalizeUsername, type Store } from '../storage/store.ts'
import { AuthServerError } from './errors.ts'
import { findUser } from './request_cache.ts'

type Grant = InstanceType<Provider['Grant']>

/** One rule of the operator's scope policy: who holds `scopes`. A user matching `users` or `claim` holds them. */
export interface ScopeGrant {
  scopes: readonly string[]
  /**
   * Gatehouse usernames, as `gatehouse users list` shows them: a local account's lowercase name, or
   * `<provider id>:<sub>` for a user of an identity provider (compared case-insensitively, like
   * every username).
   */
  users?: readonly string[]
  /**
   * Users of an identity provider whose ID token or userinfo claim `name` equals `value` or, when it
   * is a list (`groups`, `roles`), contains it; only from the provider with id `provider` when given. Read at
   * each sign-in there: a change at the provider counts from the user's next sign-in there.
   */
  claim?: { name: string; value: string; provider?: string }
}

/** Which scopes signed-in users may hold; without it every user may approve every scope. */
export interface UserScopesOptions {
  /** Held by every signed-in user (with `openid` and `offline_access`). */
  everyone: readonly string[]
  /** Held only by the users a rule names. */
  grants?: readonly ScopeGrant[]
}

/** Whether the user holds a scope. */
export type Holds = (scope: string) => boolean

const ALWAYS = ['openid', 'offline_access']
// The stored model's name predates the word "identity provider"; renaming it would orphan stored claims.
const PROVIDER_CLAIMS = 'GatehouseUpstreamClaims'
const holdsEverything: Holds = () => true

interface ClaimsSnapshot {
  provider: string
  claims: Record<string, unknown>
}

/** Checks a policy at start: known scopes only, every rule names someone, usernames as they are stored. */
export function checkUserScopes(policy: UserScopesOptions, known: readonly string[]): UserScopesOptions {
  const fail = (message: string): never => {
    throw new AuthServerError('options_invalid', `authorization server: userScopes: ${message}`)
  }
  if (!Array.isArray(policy.everyone)) fail('everyone must be a list of scopes')
  ;(policy.grants ?? []).forEach((rule, i) => {
    const where = `grants[${i}]`
    if (!Array.isArray(rule?.scopes) || rule.scopes.length === 0) fail(`${where}.scopes must list scopes`)
    const unknown = rule.scopes.filter((s) => !known.includes(s))
    if (unknown.length)
      fail(`${where} grants ${unknown.join(', ')}, which no resource has; known: ${known.join(', ')}`)
    if (rule.users === undefined && rule.claim === undefined) fail(`${where} needs users or claim`)
    for (const user of rule.users ?? []) {
      if (typeof user !== 'string' || user === '') fail(`${where}.users must be usernames`)
      if (!user.includes(':') && user !== user.toLowerCase())
        fail(`${where}.users: local usernames are stored lowercase; write ${user.toLowerCase()}, not ${user}`)
    }
    const claim = rule.claim
    if (
      claim !== undefined &&
      !(typeof claim.name === 'string' && claim.name && typeof claim.value === 'string')
    )
      fail(`${where}.claim must be { name, value } with non-empty text`)
  })
  return policy
}

/**
 * The operator's scope policy, evaluated for a user at consent, at each reuse of a remembered grant and at
 * each refresh, so a scope taken from a user stops appearing in new tokens at once.
 */
export class UserScopes {
  readonly #policy: UserScopesOptions | undefined
  readonly #store: Store
  readonly #snapshots
  readonly #snapshotTtl: number
  readonly #claimNames: Set<string>

  /** `snapshotTtl`: how long the claims of a sign-in at an identity provider count; at least as long as a grant made after it. */
  constructor(policy: UserScopesOptions | undefined, store: Store, snapshotTtl: number) {
    this.#policy = policy
    this.#store = store
    this.#snapshots = store.oidcAdapter(PROVIDER_CLAIMS)
    this.#snapshotTtl = snapshotTtl
    this.#claimNames = new Set((policy?.grants ?? []).flatMap((r) => (r.claim ? [r.claim.name] : [])))
  }

  async held(accountId: string): Promise<Holds> {
    if (!this.#policy) return holdsEverything
    const held = new Set([...ALWAYS, ...this.#policy.everyone])
    const user = await findUser(this.#store, accountId)
    const snapshot = (await this.#snapshots.find(accountId)) as ClaimsSnapshot | undefined
    for (const rule of this.#policy.grants ?? []) {
      const named =
        user !== undefined && (rule.users ?? []).some((u) => normalizeUsername(u) === user.username)
      if (named || (rule.claim && snapshot && claimMatches(rule.claim, snapshot))) {
        for (const scope of rule.scopes) held.add(scope)
      }
    }
    return (scope) => held.has(scope)
  }

  /** Keeps, from a sign-in at an identity provider, the claims the rules read (and nothing else). */
  async rememberProviderClaims(userId: string, provider: string, claims: Record<string, unknown>) {
    if (this.#claimNames.size === 0) return
    const kept = Object.fromEntries(Object.entries(claims).filter(([name]) => this.#claimNames.has(name)))
    await this.#snapshots.upsert(userId, { provider, claims: kept }, this.#snapshotTtl)
  }

  /** Aligns the grant with what its user holds now; saves it when that changed anything. */
  async align(grant: Grant): Promise<Holds> {
    const holds = await this.held(grant.accountId ?? '')
    if (alignGrant(grant, holds)) await grant.save()
    return holds
  }
}

function claimMatches(rule: NonNullable<ScopeGrant['claim']>, snapshot: ClaimsSnapshot): boolean {
  if (rule.provider !== undefined && rule.provider !== snapshot.provider) return false
  const value = snapshot.claims[rule.name]
  return Array.isArray(value) ? value.includes(rule.value) : value === rule.value
}

/**
 * A scope the user no longer holds moves from granted to rejected: tokens lose it, and the provider does not
 * ask for it again. A rejected scope the user now holds is forgotten, so the next authorization asks for it.
 * Returns whether anything changed.
 */
export function alignGrant(grant: Grant, holds: Holds): boolean {
  let changed = false
  const align = (granted: string | undefined, rejected: string | undefined) => {
    const given = words(granted)
    const refused = [...new Set([...words(rejected), ...given])].filter((s) => !holds(s))
    const kept = given.filter(holds)
    if (kept.length !== given.length || refused.length !== words(rejected).length) changed = true
    return [kept.join(' '), refused.join(' ')] as const
  }
  const [oidcGranted, oidcRejected] = align(grant.openid?.scope, grant.rejected?.openid?.scope)
  if (grant.openid) grant.openid.scope = oidcGranted
  const resources = new Set([
    ...Object.keys(grant.resources ?? {}),
    ...Object.keys(grant.rejected?.resources ?? {}),
  ])
  const rejectedResources: Record<string, string> = {}
  for (const resource of resources) {
    const [granted, rejected] = align(grant.resources?.[resource], grant.rejected?.resources?.[resource])
    if (grant.resources?.[resource] !== undefined) grant.resources[resource] = granted
    if (rejected) rejectedResources[resource] = rejected
  }
  if (changed) {
    grant.rejected ??= {}
    grant.rejected.openid = { ...grant.rejected.openid, scope: oidcRejected }
    grant.rejected.resources = rejectedResources
  }
  return changed
}

const words = (value: string | undefined) => (value ?? '').split(' ').filter(Boolean)
