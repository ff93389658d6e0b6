import type { JsonWebKey } from 'node:crypto'
import { createLocalJWKSet, type JWTPayload, jwtVerify } from 'jose'
import type Provider from 'oidc-provider'
import { type ClientMetadata, errors, type KoaContextWithOIDC } from 'oidc-provider'
import type { Store } from '../storage/store.ts'
import { AuthServerError } from './errors.ts'
import type { PrivateJwk } from './keys.ts'

/** RFC 8693 §2.1. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
/** RFC 8693 §3: the only token type exchanged here, in and out. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'

/**
 * Which declared clients may exchange a user's MCP access token (RFC 8693) for a short-lived token for
 * which APIs, with which scopes. Several rules for one client and audience add up.
 */
export interface TokenExchangeRule {
  /** Declared confidential clients (`client_id`s of `clients`) that may exchange. */
  clients: readonly string[]
  /** The targets (`resource` or `audience` values), each the exchanged token's `aud`; never an MCP resource. */
  audiences: readonly string[]
  /** The scopes the exchanged tokens may carry; a token gets only those the subject token also has. */
  scopes: readonly string[]
  /** The audiences of the subject tokens this rule accepts, each one of `resources`; default all of them. */
  resources?: readonly string[]
}

/** A rule as checked at start. */
interface Rule {
  clients: ReadonlySet<string>
  audiences: ReadonlySet<string>
  scopes: ReadonlySet<string>
  resources: ReadonlySet<string>
}

export interface TokenExchangePolicy {
  rules: readonly Rule[]
  /** The clients that appear in a rule: they get the grant type. */
  clients: ReadonlySet<string>
  /** The MCP resources of this server: a subject token must be for one of them. */
  resources: ReadonlySet<string>
}

const fail = (message: string): never => {
  throw new AuthServerError('options_invalid', `authorization server: tokenExchange${message}`)
}

/**
 * Checks the rules at start: each names declared clients that authenticate, targets that are not MCP
 * resources of this server (an exchanged token is never accepted back as an MCP token or exchanged again),
 * and scope tokens.
 */
export function resolveTokenExchange(
  rules: readonly TokenExchangeRule[],
  declared: ReadonlyMap<string, { confidential: boolean }>,
  resources: readonly string[],
): TokenExchangePolicy {
  if (!Array.isArray(rules)) return fail(' must be a list of { clients, audiences, scopes } rules')
  const checked = rules.map((rule, i) => checkRule(rule, `[${i}]`, declared, resources))
  return {
    rules: checked,
    clients: new Set(checked.flatMap((rule) => [...rule.clients])),
    resources: new Set(resources),
  }
}

function checkRule(
  rule: TokenExchangeRule,
  where: string,
  declared: ReadonlyMap<string, { confidential: boolean }>,
  resources: readonly string[],
): Rule {
  const strings = (name: keyof TokenExchangeRule, value: unknown): string[] => {
    if (
      !Array.isArray(value) ||
      value.length === 0 ||
      !value.every((v) => typeof v === 'string' && v !== '')
    ) {
      return fail(`${where}.${name} must be a non-empty list of non-empty strings`)
    }
    return value
  }
  for (const id of strings('clients', rule?.clients)) {
    const client = declared.get(id)
    if (!client) fail(`${where}.clients: ${id} is not a declared client; declare it in clients with a secret`)
    if (!client?.confidential) {
      fail(`${where}.clients: ${id} is a public client; only a client that authenticates may exchange tokens`)
    }
  }
  for (const audience of strings('audiences', rule.audiences)) {
    if (resources.includes(audience)) {
      fail(
        `${where}.audiences: ${audience} is an MCP resource of this server; name the downstream API instead`,
      )
    }
  }
  for (const scope of strings('scopes', rule.scopes)) {
    if (!/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scope))
      fail(`${where}.scopes: ${JSON.stringify(scope)} is not a scope`)
  }
  for (const resource of rule.resources === undefined ? [] : strings('resources', rule.resources)) {
    if (!resources.includes(resource)) {
      fail(`${where}.resources: ${resource} is not one of the resources ${resources.join(', ')}`)
    }
  }
  return {
    clients: new Set(rule.clients),
    audiences: new Set(rule.audiences),
    scopes: new Set(rule.scopes),
    resources: new Set(rule.resources ?? resources),
  }
}

/** A declared client named in the policy gets the grant type next to the ones it declared (or the defaults). */
export function withExchangeGrant(metadata: ClientMetadata, policy: TokenExchangePolicy): ClientMetadata {
  if (!policy.clients.has(metadata.client_id)) return metadata
  const declared = metadata.grant_types ?? ['authorization_code', 'refresh_token']
  return { ...metadata, grant_types: [...declared, TOKEN_EXCHANGE_GRANT] }
}

/** The `act` claim (RFC 8693 §4.1) of an exchanged token: the client that acts for the user. */
export function exchangedTokenClaims(token: { gty?: string; clientId?: string }) {
  return token.gty === TOKEN_EXCHANGE_GRANT ? { act: { sub: token.clientId } } : undefined
}

export interface TokenExchangeContext {
  issuer: string
  store: Store
  policy: TokenExchangePolicy
  /** The published keys: a subject token must verify with one of them. */
  publicJwks: JsonWebKey[]
  signingKey: PrivateJwk
  /** Upper bound of the exchanged token's lifetime, seconds; it never outlives the subject token. */
  ttl: number
}

/** Parameters of the grant besides `grant_type` and client authentication (RFC 8693 §2.1). */
const PARAMETERS = [
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'requested_token_type',
  'resource',
  'audience',
  'scope',
]

/** Registers the grant; call before `provider.callback()` is first used. */
export function registerTokenExchange(provider: Provider, context: TokenExchangeContext) {
  const keys = createLocalJWKSet({ keys: context.publicJwks as never })
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, (ctx) => exchange(ctx, context, keys), PARAMETERS)
}

type KeySet = ReturnType<typeof createLocalJWKSet>

const parameter = (ctx: KoaContextWithOIDC, name: string): string | undefined => {
  const value = (ctx.oidc.params as Record<string, unknown>)[name]
  return typeof value === 'string' && value !== '' ? value : undefined
}

async function exchange(ctx: KoaContextWithOIDC, context: TokenExchangeContext, keys: KeySet) {
  const client = ctx.oidc.client as NonNullable<KoaContextWithOIDC['oidc']['client']>
  // The grant type is given only to declared confidential clients; checked again, this is what it guards.
  if (!context.policy.clients.has(client.clientId) || client.clientAuthMethod === 'none') {
    throw new errors.UnauthorizedClient(`client ${client.clientId} may not exchange tokens`)
  }
  const request = checkRequest(ctx)
  const subject = await verifySubjectToken(request.subjectToken, context, keys)
  const rules = context.policy.rules.filter(
    (rule) =>
      rule.clients.has(client.clientId) &&
      rule.audiences.has(request.target) &&
      rule.resources.has(subject.aud),
  )
  if (rules.length === 0) {
    throw new errors.InvalidTarget(
      `client ${client.clientId} may not exchange a token of ${subject.aud} for ${request.target}`,
    )
  }
  const scopes = grantedScopes(
    request.scope,
    subject.scopes,
    new Set(rules.flatMap((rule) => [...rule.scopes])),
  )
  const expiresIn = Math.min(context.ttl, subject.exp - Math.floor(Date.now() / 1000))
  // Verified as unexpired just now; a token in its last second gets nothing rather than a zero lifetime.
  if (expiresIn < 1) throw new errors.InvalidRequest('the subject token has expired')
  const token = new ctx.oidc.provider.AccessToken({
    accountId: subject.sub,
    client,
    scope: scopes.join(' '),
    gty: TOKEN_EXCHANGE_GRANT,
    expiresIn,
    resourceServer: {
      audience: request.target,
      scope: scopes.join(' '),
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: context.signingKey.alg, kid: context.signingKey.kid } },
    },
  } as never)
  ctx.oidc.entity('AccessToken', token)
  ctx.body = {
    access_token: await token.save(),
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: expiresIn,
    scope: scopes.join(' '),
  }
}

interface ExchangeRequest {
  subjectToken: string
  target: string
  scope: string | undefined
}

function checkRequest(ctx: KoaContextWithOIDC): ExchangeRequest {
  const subjectToken = parameter(ctx, 'subject_token')
  if (!subjectToken) throw new errors.InvalidRequest('missing required parameter subject_token')
  const subjectTokenType = parameter(ctx, 'subject_token_type')
  if (subjectTokenType !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`)
  }
  const requested = parameter(ctx, 'requested_token_type')
  if (requested !== undefined && requested !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE} or absent`)
  }
  if (parameter(ctx, 'actor_token') || parameter(ctx, 'actor_token_type')) {
    throw new errors.InvalidRequest('actor_token is not supported: the authenticated client is the actor')
  }
  const targets = [parameter(ctx, 'resource'), parameter(ctx, 'audience')].filter((v) => v !== undefined)
  if (targets.length === 0) throw new errors.InvalidRequest('missing the target: give resource or audience')
  if (targets.length > 1)
    throw new errors.InvalidTarget('give the target once: resource or audience, not both')
  return { subjectToken, target: targets[0] as string, scope: parameter(ctx, 'scope') }
}

interface Subject {
  sub: string
  aud: string
  exp: number
  scopes: ReadonlySet<string>
}

/**
 * An MCP access token this server issued for one of its resources, to a user, unexpired and not revoked;
 * anything else is `invalid_request` (RFC 8693 §2.2.2).
 */
async function verifySubjectToken(
  value: string,
  context: TokenExchangeContext,
  keys: KeySet,
): Promise<Subject> {
  const invalid = (why: string): never => {
    throw new errors.InvalidRequest(`the subject_token is not acceptable: ${why}`)
  }
  let payload: JWTPayload
  try {
    ;({ payload } = await jwtVerify(value, keys, {
      issuer: context.issuer,
      typ: 'at+jwt',
      requiredClaims: ['sub', 'aud', 'exp', 'iat', 'client_id'],
    }))
  } catch (error) {
    return invalid(`it is not a valid access token of this server (${(error as Error).message})`)
  }
  const { sub, aud, exp, iat, client_id: clientId, act } = payload as JWTPayload & Record<string, unknown>
  const resource = typeof aud === 'string' ? aud : undefined
  if (!resource || !context.policy.resources.has(resource)) {
    invalid('its audience is not an MCP resource of this server')
  }
  if (typeof clientId !== 'string' || sub === clientId || act !== undefined) {
    invalid('it was not issued to a client for a user')
  }
  const user = await context.store.users.findById(sub as string)
  if (!user || user.disabledAt !== undefined) invalid('its user is disabled or deleted')
  const revokedAt = await context.store.revocations.revokedAt(sub as string, clientId as string)
  if (revokedAt !== undefined && (iat as number) <= revokedAt) invalid('it was revoked')
  const scope = typeof payload.scope === 'string' ? payload.scope : ''
  return {
    sub: sub as string,
    aud: resource as string,
    exp: exp as number,
    scopes: new Set(scope.split(' ').filter(Boolean)),
  }
}

/** Only narrows: a requested scope must be in the subject token and allowed by the policy. */
function grantedScopes(
  requested: string | undefined,
  held: ReadonlySet<string>,
  allowed: ReadonlySet<string>,
): string[] {
  if (requested === undefined) {
    const scopes = [...allowed].filter((scope) => held.has(scope))
    if (scopes.length === 0) {
      throw new errors.InvalidScope(
        'the subject token has none of the scopes this target allows',
        [...allowed].join(' '),
      )
    }
    return scopes
  }
  const scopes = [...new Set(requested.split(' ').filter(Boolean))]
  for (const scope of scopes) {
    if (!held.has(scope)) throw new errors.InvalidScope(`scope ${scope} is not in the subject token`, scope)
    if (!allowed.has(scope))
      throw new errors.InvalidScope(`scope ${scope} is not allowed for this target`, scope)
  }
  if (scopes.length === 0) throw new errors.InvalidScope('scope is empty', '')
  return scopes
}

/** The provider answers a client without the grant type `invalid_request`; RFC 6749 §5.2 says this. */
export function unauthorizedClientMiddleware(route: string): Parameters<Provider['use']>[0] {
  return async (ctx, next) => {
    await next()
    const body = ctx.body as { error?: string; error_description?: string } | undefined
    if (
      ctx.path === route &&
      ctx.oidc?.params?.grant_type === TOKEN_EXCHANGE_GRANT &&
      body?.error === 'invalid_request' &&
      body.error_description === 'requested grant type is not allowed for this client'
    ) {
      ctx.body = { error: 'unauthorized_client', error_description: 'this client may not exchange tokens' }
    }
  }
}
