import { generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto'
import type { VerifiedToken } from '../guard/index.ts'
import { TtlCache } from '../guard/lib/ttl_cache.ts'

export const UPSTREAM_JWKS_PATH = '/.well-known/gatehouse/upstream-jwks.json'
const ASSERTION_TTL_SECONDS = 60
/** How long one caller's assertion is reused: the upstream always gets one with at least 15 s left. */
const REUSE_MS = 45_000
/** Callers whose headers are kept. */
const MAX_CACHED_CALLERS = 10_000

/** Who is calling, as the gateway knows it: the stable key that sessions are bound to. */
export interface Principal {
  key: string
  token: VerifiedToken
}

export const principalOf = (token: VerifiedToken): Principal => ({
  key: `${token.issuer}\u0000${token.subject ?? `client:${token.clientId ?? ''}`}`,
  token,
})

/**
 * Tells the upstream who the caller is, in `mode: none`. The plain `X-Gatehouse-*` headers are for
 * convenience; `X-Gatehouse-Identity` is what an upstream should trust: a JWT signed by this gateway
 * (ephemeral Ed25519 key, JWKS at {@link UPSTREAM_JWKS_PATH}), with the upstream as audience and a lifetime
 * of one minute, so it is useless anywhere else and soon. A signature costs more than the rest of a proxied
 * request, so one caller's headers are reused for {@link REUSE_MS}: the `jti` names an assertion, not a request.
 */
export class UpstreamIdentity {
  readonly #key: KeyObject
  readonly #kid = randomUUID()
  readonly jwks: { keys: Record<string, unknown>[] }
  readonly #issuer: string
  readonly #audience: string
  readonly #header: string
  /** Headers by {@link callerKey}; when full, the oldest caller goes (a new one costs one signature). */
  readonly #cache = new TtlCache<CachedHeaders>(MAX_CACHED_CALLERS)
  /** The same entries by token: the guard's cache hands out one `VerifiedToken` per token, so no key is built. */
  readonly #byToken = new WeakMap<VerifiedToken, CachedHeaders>()

  constructor(issuer: string, audience: string) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    this.#key = privateKey
    this.jwks = {
      keys: [{ ...publicKey.export({ format: 'jwk' }), kid: this.#kid, alg: 'EdDSA', use: 'sig' }],
    }
    this.#issuer = issuer
    this.#audience = audience
    this.#header = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: this.#kid })).toString(
      'base64url',
    )
  }

  headers(token: VerifiedToken): Readonly<Record<string, string>> {
    const nowMs = Date.now()
    const known = this.#byToken.get(token)
    if (known !== undefined && nowMs < known.until) return known.headers
    const key = callerKey(token)
    let cached = this.#cache.get(key, nowMs)
    if (cached === undefined) {
      cached = {
        headers: Object.freeze(this.#headers(token, Math.floor(nowMs / 1000))),
        until: nowMs + REUSE_MS,
      }
      this.#cache.set(key, cached, cached.until)
    }
    this.#byToken.set(token, cached)
    return cached.headers
  }

  #headers(token: VerifiedToken, now: number): Record<string, string> {
    const assertion = this.#sign({
      iss: this.#issuer,
      aud: this.#audience,
      sub: token.subject ?? token.clientId ?? '',
      client_id: token.clientId,
      scope: token.scopes.join(' '),
      actor: token.actor,
      token_issuer: token.issuer,
      iat: now,
      exp: now + ASSERTION_TTL_SECONDS,
      jti: randomUUID(),
    })
    const headers: Record<string, string> = {
      'x-gatehouse-identity': assertion,
      'x-gatehouse-issuer': headerSafe(token.issuer),
      'x-gatehouse-scopes': headerSafe(token.scopes.join(' ')),
      'x-gatehouse-actor': token.actor,
    }
    if (token.subject !== undefined) headers['x-gatehouse-subject'] = headerSafe(token.subject)
    if (token.clientId !== undefined) headers['x-gatehouse-client-id'] = headerSafe(token.clientId)
    return headers
  }

  /** Compact EdDSA JWS through node:crypto: jose's WebCrypto path cost three times as much. */
  #sign(claims: Record<string, unknown>): string {
    const input = `${this.#header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
    return `${input}.${sign(null, Buffer.from(input), this.#key).toString('base64url')}`
  }
}

interface CachedHeaders {
  headers: Readonly<Record<string, string>>
  /** When they stop being reused. */
  until: number
}

/**
 * Every value the headers are made of, each length-prefixed so that no two callers share a key (a subject
 * may contain any character, the separator included).
 */
function callerKey(token: VerifiedToken): string {
  const part = (value: string | undefined) => (value === undefined ? '-' : `${value.length}:${value}`)
  return `${part(token.issuer)}${part(token.subject)}${part(token.clientId)}${part(token.actor)}${part(token.scopes.join(' '))}`
}

// Claims may hold characters a header cannot; those values are percent-encoded instead of dropped.
const headerSafe = (value: string): string =>
  /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value)
