import { GuardError } from './errors.ts'
import type { VerifiedToken } from './identity.ts'
import { actorOf, audiencesOf, scopesOf } from './identity.ts'
import type { RemoteKeySet } from './jwks.ts'
import { isJwsAlgorithm, type JwsAlgorithm, verifySignature } from './lib/algorithms.ts'
import {
  checkAudience,
  checkConfirmation,
  checkOptionalString,
  checkScopeClaims,
  checkTimes,
  normalizeAudience,
} from './lib/claims.ts'
import { type DecodedJws, decodeCompactJws } from './lib/compact.ts'
import type { VerificationKey } from './lib/jwk.ts'

export interface TrustedIssuer {
  issuer: string
  keys: RemoteKeySet
  /** Accept `typ: JWT` (or none) as well as `at+jwt`: many providers still issue plain JWTs. */
  acceptPlainJwt: boolean
}

export interface JwtPolicy {
  issuers: ReadonlyMap<string, TrustedIssuer>
  /** The normalized canonical resource: a plain `typ: JWT` naming it in `aud` is an access token for it. */
  resource: string
  /** Normalized accepted audiences, or `undefined` when any audience is accepted. */
  audiences: ReadonlySet<string> | undefined
  algorithms: ReadonlySet<JwsAlgorithm>
  clockSkewSeconds: number
  maxLifetimeSeconds: number
  maxTokenBytes: number
}

const ACCESS_TOKEN_TYPES = new Set(['at+jwt', 'application/at+jwt'])
const PLAIN_TYPES = new Set(['jwt', 'application/jwt'])

/**
 * Verifies a JWT access token (RFC 9068 §4) in the order that keeps work cheap for junk: syntax and size,
 * header, issuer (which selects the key set: a key of issuer B never verifies a token claiming issuer A),
 * signature, then claims.
 *
 * Not checked here: scopes (the guard's scope policy does that), DPoP proofs (see `dpop.ts`), revocation
 * (JWT access tokens cannot be revoked before they expire without introspection).
 * `jku`, `x5u`, `x5c` and `jwk` header parameters are ignored: keys come only from the issuer's JWKS.
 * Synchronous when the issuer's key is already loaded; either way a refusal is a {@link GuardError}, thrown or
 * rejected.
 */
export function verifyJwtAccessToken(
  token: string,
  policy: JwtPolicy,
  now: number,
): VerifiedToken | Promise<VerifiedToken> {
  const jws = decodeCompactJws(token, policy.maxTokenBytes)
  const { header, payload } = jws
  const alg = checkHeader(header, policy)
  const trusted = checkIssuer(payload.iss, policy.issuers)
  const plain = checkType(header.typ, trusted)
  const kid = header.kid
  if (kid !== undefined && typeof kid !== 'string')
    throw new GuardError('token_malformed', '"kid" is not a string')
  // Synchronous while the key is known: no promise on the path of nearly every token.
  const known = trusted.keys.knownKey(kid, alg)
  if (known) return acceptSigned(token, jws, alg, known, trusted, plain, policy, now)
  return trusted.keys
    .keyFor(kid, alg)
    .then((key) => acceptSigned(token, jws, alg, key, trusted, plain, policy, now))
}

function acceptSigned(
  token: string,
  { header, payload, signingInput, signature }: DecodedJws,
  alg: JwsAlgorithm,
  key: VerificationKey,
  trusted: TrustedIssuer,
  plain: boolean,
  policy: JwtPolicy,
  now: number,
): VerifiedToken {
  if (!verifySignature(alg, key.key, signingInput, signature)) throw new GuardError('signature_invalid')
  const expiresAt = checkTimes(payload, {
    now,
    clockSkewSeconds: policy.clockSkewSeconds,
    maxLifetimeSeconds: policy.maxLifetimeSeconds,
  })
  const audience = policy.audiences ? checkAudience(payload, policy.audiences) : audiencesOf(payload)
  if (plain) checkPlainJwtAudience(header.typ, audience, policy.resource)
  checkScopeClaims(payload)
  const subject = checkOptionalString(payload, 'sub')
  const clientId = checkOptionalString(payload, 'client_id') ?? checkOptionalString(payload, 'azp')
  return {
    token,
    issuer: trusted.issuer,
    subject,
    clientId,
    scopes: scopesOf(payload),
    audience,
    expiresAt,
    claims: Object.freeze(payload),
    actor: actorOf(payload, subject, clientId),
    dpopJkt: checkConfirmation(payload),
    via: 'jwt',
  }
}

function checkHeader(header: Record<string, unknown>, policy: JwtPolicy): JwsAlgorithm {
  const { alg } = header
  if (typeof alg !== 'string') throw new GuardError('token_malformed', 'the header has no "alg"')
  if (!isJwsAlgorithm(alg) || !policy.algorithms.has(alg)) {
    throw new GuardError(
      'algorithm_not_allowed',
      `alg ${JSON.stringify(alg)}, allowed ${[...policy.algorithms].join(', ')}`,
    )
  }
  // The guard implements no JWS extension, so any "crit" is one it does not understand (RFC 7515 §4.1.11).
  if (header.crit !== undefined)
    throw new GuardError('token_malformed', '"crit" header parameters are not supported')
  if (header.b64 !== undefined)
    throw new GuardError('token_malformed', 'unencoded payloads (b64) are not accepted')
  if (header.zip !== undefined)
    throw new GuardError('token_malformed', 'compressed payloads (zip) are not accepted')
  if (typeof header.cty === 'string' && header.cty.toUpperCase() === 'JWT') {
    throw new GuardError('token_malformed', 'nested JWTs are not accepted')
  }
  return alg
}

function checkIssuer(iss: unknown, issuers: ReadonlyMap<string, TrustedIssuer>): TrustedIssuer {
  if (typeof iss !== 'string') throw new GuardError('claim_invalid', '"iss" is missing or not a string')
  const trusted = issuers.get(iss)
  if (trusted) return trusted
  const bare = iss.replace(/\/$/, '')
  for (const candidate of issuers.keys()) {
    if (candidate.replace(/\/$/, '') === bare) {
      throw new GuardError(
        'issuer_trailing_slash',
        `token iss ${JSON.stringify(iss)}, trusted issuer ${JSON.stringify(candidate)}: configure the issuer exactly as the provider writes it`,
      )
    }
  }
  throw new GuardError(
    'issuer_untrusted',
    `token iss ${JSON.stringify(iss)}, trusted ${JSON.stringify([...issuers.keys()])}`,
  )
}

/**
 * `at+jwt` passes; a plain `JWT` (or no `typ`) passes when the issuer is set to accept plain JWTs, and
 * otherwise is returned as `true`: it passes later only if its audience is this resource, which an ID token's
 * (the client_id) never is. Any other `typ` is refused here.
 */
function checkType(typ: unknown, trusted: TrustedIssuer): boolean {
  if (typ !== undefined && typeof typ !== 'string')
    throw new GuardError('token_type_invalid', '"typ" is not a string')
  const type = typ?.toLowerCase()
  if (type !== undefined && ACCESS_TOKEN_TYPES.has(type)) return false
  if (type === undefined || PLAIN_TYPES.has(type)) return !trusted.acceptPlainJwt
  throw new GuardError(
    'token_type_invalid',
    `typ ${JSON.stringify(typ)} is not an access token type (at+jwt)`,
  )
}

function checkPlainJwtAudience(typ: unknown, audience: readonly string[], resource: string): void {
  if (audience.some((aud) => normalizeAudience(aud) === resource)) return
  throw new GuardError(
    'token_type_invalid',
    `typ ${JSON.stringify(typ)} with aud ${JSON.stringify(audience)}, not this resource ${resource}: ` +
      'a plain JWT is accepted only for this resource, or from an issuer set to accept them ' +
      '(OAUTH_ACCEPT_PLAIN_JWT=true, acceptPlainJwt, accept_plain_jwt)',
  )
}
