import * as oauth from 'oauth4webapi'
import { metadataUrls } from '../guard/index.ts'
import { isLoopback } from '../guard/lib/http.ts'
import { CliError } from './errors.ts'

/** One line of the walk, printed as it happens. */
export type Report = (step: string, outcome: 'ok' | 'info' | 'fail', detail: string) => void

/**
 * A failed step: what the server did against which specification, and what a client does about it. The
 * probe stops there, as a client would.
 */
export const stepFailed = (step: string, wrong: string, client: string): CliError =>
  new CliError('probe_failed', `${step}: ${wrong}. A client ${client}.`)

/** fetch, with a connection failure turned into the step's failure. */
export async function reach(step: string, url: string | URL, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init)
  } catch (error) {
    const cause = (error as { cause?: Error }).cause?.message ?? (error as Error).message
    throw stepFailed(
      step,
      `${String(url)} cannot be reached (${cause})`,
      'cannot go on: check the URL and that the server runs',
    )
  }
}

export interface Challenge {
  scheme: string
  params: Record<string, string>
}

/** `WWW-Authenticate` challenges (RFC 9110 §11.6.1): quoted-string and token values, several challenges. */
export function parseChallenges(header: string | null): Challenge[] {
  if (!header) return []
  const challenges: Challenge[] = []
  const pattern = /\s*,?\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+)))?/g
  for (const [, name, quoted, token] of header.matchAll(pattern)) {
    const key = name as string
    const last = challenges.at(-1)
    if (quoted === undefined && token === undefined) challenges.push({ scheme: key, params: {} })
    else if (last) last.params[key.toLowerCase()] = quoted?.replace(/\\(.)/g, '$1') ?? (token as string)
  }
  return challenges
}

export interface ResourceMetadata {
  url: string
  resource: string
  authorizationServers: string[]
  scopesSupported: string[] | undefined
}

/**
 * RFC 9728 §3: the `resource_metadata` of the challenge first, then the path-inserted and the root
 * well-known URLs (MCP 2025-11-25 "Protected Resource Metadata Discovery"). Undefined when none answers:
 * a 2025-03-26 server, whose authorization server is its own origin.
 */
export async function discoverResource(
  mcpUrl: URL,
  fromChallenge: string | undefined,
  report: Report,
): Promise<ResourceMetadata | undefined> {
  const path = mcpUrl.pathname.replace(/\/+$/, '')
  const candidates = [
    fromChallenge,
    `${mcpUrl.origin}/.well-known/oauth-protected-resource${path}`,
    `${mcpUrl.origin}/.well-known/oauth-protected-resource`,
  ].filter((url, index, all): url is string => url !== undefined && all.indexOf(url) === index)
  for (const url of candidates) {
    const response = await reach('PRM', url, { headers: { accept: 'application/json' } })
    if (!response.ok) {
      report('PRM', 'info', `${url}: HTTP ${response.status}, trying the next location`)
      continue
    }
    const document = (await response.json()) as Record<string, unknown>
    const metadata = checkResourceMetadata(url, document, mcpUrl)
    report(
      'PRM',
      'ok',
      `${url}: resource ${metadata.resource}, authorization servers ${metadata.authorizationServers.join(' ')}`,
    )
    return metadata
  }
  report(
    'PRM',
    'info',
    'no Protected Resource Metadata: treating the server as MCP 2025-03-26 (authorization server at its origin)',
  )
  return undefined
}

function checkResourceMetadata(
  url: string,
  document: Record<string, unknown>,
  mcpUrl: URL,
): ResourceMetadata {
  const { resource, authorization_servers: servers, scopes_supported: scopes } = document
  if (typeof resource !== 'string' || !URL.canParse(resource))
    throw stepFailed(
      'PRM',
      `${url} has no "resource" URL (RFC 9728 §2)`,
      'cannot tell which server the metadata is for and stops',
    )
  const declared = new URL(resource)
  const prefix = declared.pathname.replace(/\/+$/, '')
  if (
    declared.origin !== mcpUrl.origin ||
    !(mcpUrl.pathname === prefix || mcpUrl.pathname.startsWith(`${prefix}/`) || prefix === '')
  )
    throw stepFailed(
      'PRM',
      `${url} declares resource ${resource}, which is not ${mcpUrl.href} (RFC 9728 §3.3: it must be the resource the client asked for)`,
      'must not use this metadata, since it could send its tokens to another server, and stops',
    )
  if (!Array.isArray(servers) || servers.length === 0 || !servers.every((s) => typeof s === 'string'))
    throw stepFailed(
      'PRM',
      `${url} lists no authorization_servers (MCP: at least one)`,
      'has nowhere to get a token and stops',
    )
  return {
    url,
    resource,
    authorizationServers: servers as string[],
    scopesSupported: Array.isArray(scopes) ? (scopes as string[]) : undefined,
  }
}

/**
 * The authorization server's metadata at the locations MCP clients try (the guard's own list), with the
 * `issuer` compared byte for byte (RFC 8414 §3.3). A server with no metadata at all gets the 2025-03-26
 * default endpoints when `legacy`.
 */
export async function discoverAuthorizationServer(
  issuer: string,
  legacy: boolean,
  report: Report,
): Promise<oauth.AuthorizationServer> {
  for (const url of metadataUrls(issuer)) {
    const response = await reach('AS metadata', url, { headers: { accept: 'application/json' } })
    if (!response.ok) {
      report('AS metadata', 'info', `${url.href}: HTTP ${response.status}, trying the next location`)
      continue
    }
    const document = (await response.json()) as oauth.AuthorizationServer
    if (document.issuer !== issuer)
      throw stepFailed(
        'AS metadata',
        `${url.href} declares issuer ${JSON.stringify(document.issuer)}, expected ${JSON.stringify(issuer)} (RFC 8414 §3.3: identical)`,
        'must not use this metadata (a mix-up attack looks like this) and stops',
      )
    report(
      'AS metadata',
      'ok',
      `${url.href}: issuer matches; authorize ${document.authorization_endpoint}, token ${document.token_endpoint}`,
    )
    const methods = document.code_challenge_methods_supported
    if (!methods?.includes('S256'))
      throw stepFailed(
        'AS metadata',
        `code_challenge_methods_supported is ${JSON.stringify(methods)}, without S256 (MCP: clients MUST refuse a server that does not advertise PKCE)`,
        'refuses to proceed',
      )
    return document
  }
  if (!legacy)
    throw stepFailed(
      'AS metadata',
      `no metadata for ${issuer} at any location clients try (RFC 8414, OIDC Discovery)`,
      'cannot go on',
    )
  report(
    'AS metadata',
    'info',
    `none at ${issuer}: using the 2025-03-26 defaults /authorize, /token, /register`,
  )
  return {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    registration_endpoint: `${issuer}/register`,
  }
}

export interface RegisteredClient {
  client: oauth.Client
  auth: oauth.ClientAuth
  how: string
}

export interface Registration {
  clientId?: string | undefined
  clientSecret?: string | undefined
  clientIdMetadataUrl?: string | undefined
  redirectUri: string
}

/** Pre-registered when given a client_id, else CIMD when both sides offer it, else DCR (RFC 7591). */
export async function registerClient(
  as: oauth.AuthorizationServer,
  how: Registration,
  report: Report,
): Promise<RegisteredClient> {
  if (how.clientId) {
    report('registration', 'ok', `pre-registered client ${how.clientId}`)
    return withAuth(as, { client_id: how.clientId }, how.clientSecret, 'pre-registered')
  }
  if (how.clientIdMetadataUrl && as.client_id_metadata_document_supported === true) {
    report('registration', 'ok', `client ID metadata document ${how.clientIdMetadataUrl}`)
    return { client: { client_id: how.clientIdMetadataUrl }, auth: oauth.None(), how: 'CIMD' }
  }
  if (!as.registration_endpoint)
    throw stepFailed(
      'registration',
      'the authorization server offers neither a registration_endpoint nor client ID metadata documents',
      'needs a pre-registered client: pass --client-id (and --client-secret)',
    )
  const response = await oauth.dynamicClientRegistrationRequest(
    as,
    {
      client_name: 'gatehouse probe',
      redirect_uris: [how.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      application_type: 'native',
    } as Partial<oauth.Client>,
    insecure(as.registration_endpoint),
  )
  const registered = await registrationResponse(response, as.registration_endpoint, report)
  report('registration', 'ok', `DCR at ${as.registration_endpoint}: client ${registered.client_id}`)
  return withAuth(as, registered, registered.client_secret as string | undefined, 'DCR')
}

/**
 * RFC 7591 §3.2: 201 with a `client_id`. A secret without `client_secret_expires_at` (required by §3.2.1)
 * is reported but used, as clients do; oauth4webapi would refuse it outright.
 */
async function registrationResponse(
  response: Response,
  endpoint: string,
  report: Report,
): Promise<oauth.Client> {
  const body = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined
  if (response.status !== 201 || typeof body?.client_id !== 'string') {
    throw stepFailed(
      'registration',
      `DCR at ${endpoint} answered ${response.status} ${JSON.stringify(body ?? null).slice(0, 300)} instead of 201 with a client_id (RFC 7591 §3.2)`,
      'cannot register and stops',
    )
  }
  if (typeof body.client_secret === 'string' && typeof body.client_secret_expires_at !== 'number')
    report(
      'registration',
      'info',
      'a client_secret without client_secret_expires_at (RFC 7591 §3.2.1 requires it); used anyway',
    )
  return body as oauth.Client
}

/** The token endpoint authentication the registration says, else the first the server supports for a secret. */
function withAuth(
  as: oauth.AuthorizationServer,
  client: oauth.Client,
  secret: string | undefined,
  how: string,
): RegisteredClient {
  if (!secret) return { client, auth: oauth.None(), how }
  const supported = as.token_endpoint_auth_methods_supported ?? ['client_secret_basic']
  const method =
    client.token_endpoint_auth_method ??
    (supported.includes('client_secret_basic') ? 'client_secret_basic' : 'client_secret_post')
  const auth = method === 'client_secret_post' ? oauth.ClientSecretPost(secret) : clientSecretBasic(secret)
  return { client, auth, how: `${how}, ${method}` }
}

/**
 * RFC 6749 §2.3.1 Basic with each part form-encoded by `encodeURIComponent`, which leaves `-._~` as they
 * are: oauth4webapi's own encodes `-` too, which is valid but which some servers (the conformance suite's
 * among them) fail to decode.
 */
const clientSecretBasic =
  (secret: string): oauth.ClientAuth =>
  (_as, client, _body, headers) => {
    const credentials = `${encodeURIComponent(client.client_id)}:${encodeURIComponent(secret)}`
    headers.set('authorization', `Basic ${Buffer.from(credentials).toString('base64')}`)
  }

/** oauth4webapi refuses http: endpoints; loopback ones (development, tests, the conformance suite) are allowed. */
export const insecure = (endpoint: string | undefined) =>
  ({
    [oauth.allowInsecureRequests]: endpoint !== undefined && isLoopback(new URL(endpoint).hostname),
  }) as const

export function describe(error: unknown): string {
  if (error instanceof oauth.ResponseBodyError)
    return `${error.error}${error.error_description ? `: ${error.error_description}` : ''} (HTTP ${error.status})`
  if (error instanceof oauth.AuthorizationResponseError)
    return `${error.error}${error.error_description ? `: ${error.error_description}` : ''}`
  return (error as Error).message
}
