import { text } from 'node:stream/consumers'
import { parseArgs } from 'node:util'
import {
  type AuthorizationServerMetadata,
  createGuard,
  discoverAuthorizationServer,
  type GuardErrorCode,
  type GuardOptions,
  guardOptionsFromEnv,
  isGuardError,
  metadataUrls,
  RemoteKeySet,
} from '../guard/index.ts'
import { failWith } from './errors.ts'
import { type Paint, painter } from './style.ts'

const HELP = `Usage: gatehouse doctor [--issuer URL] [--audience A] [--config F] [--token T|-] [--json]

Checks an authorization server as MCP clients and the guard see it: the metadata at every location
clients try, the "issuer" byte for byte, the JWKS, PKCE S256, registration (DCR or CIMD). With --token,
decodes the token and gives the guard's verdict on it (the same code gatehouse serve would answer), with
the fix for a failure.

Options:
  --issuer URL     the issuer, exactly as the provider writes it (default OAUTH_ISSUER_URL)
  --audience A     the accepted audience: the MCP URL or the provider's API identifier (default
                   OAUTH_AUDIENCE); a token is then checked as a server with this audience checks it
  --config F       read the issuer and audiences from gatehouse serve's configuration file instead
  --token T|-      an access token to explain; "-" reads it from standard input
  --json           one JSON document instead of text, for scripts
  -h, --help       this text

Exit status: 0 when every check passes, 1 when one fails.

Examples:
  gatehouse doctor --issuer https://tenant.eu.auth0.com/ --audience https://mcp.example.com/mcp
  pbpaste | gatehouse doctor --issuer https://idp.example.com --audience api://mcp --token -
  gatehouse doctor --config gatehouse.yaml --token "$TOKEN" --json | jq '.checks[] | select(.status=="fail")'`

export type CheckStatus = 'pass' | 'fail' | 'warn'

export interface DoctorCheck {
  name: string
  status: CheckStatus
  detail: string
  /** What to change, for a failure or a warning. */
  fix?: string
  /** The guard's error code, when the guard decided. */
  code?: GuardErrorCode
}

export interface DoctorReport {
  issuer: string
  audiences: readonly string[] | undefined
  token?: { header: unknown; claims: unknown } | { opaque: true }
  checks: DoctorCheck[]
  ok: boolean
}

/** For a server whose real MCP URL is unknown here: a plain JWT then passes only from an issuer set to accept them. */
const PLACEHOLDER_RESOURCE = 'https://gatehouse-doctor.invalid/mcp'

/** The fix for each refusal the guard can give a token, in the operator's terms. */
const FIXES: Partial<Record<GuardErrorCode, string>> = {
  token_opaque:
    'the provider issued an opaque token: configure it to issue JWT access tokens for an API (Auth0: create an ' +
    'API and request it with the audience parameter or set it as the default audience; Okta/Entra: a custom ' +
    'authorization server or an app ID URI), then set OAUTH_AUDIENCE to that identifier; or configure introspection',
  issuer_trailing_slash:
    'set OAUTH_ISSUER_URL to the "iss" of the token exactly, trailing slash included (or excluded)',
  issuer_untrusted:
    'the token comes from another issuer: set OAUTH_ISSUER_URL to its "iss", or get a token there',
  audience_mismatch:
    "the token names another audience: request it with resource (RFC 8707) or the provider's audience parameter " +
    'set to the MCP URL or API identifier, or add its "aud" to OAUTH_AUDIENCE if that is really this server',
  token_expired: 'get a new token (or let the client refresh it); check the clocks if it was just issued',
  token_not_yet_valid: "check this machine's clock against the provider's",
  token_type_invalid:
    'the token is not an RFC 9068 access token ("typ": "at+jwt"): if the provider issues "typ": "JWT" for your ' +
    'API, set OAUTH_ACCEPT_PLAIN_JWT=true; never send an ID token as an access token',
  key_not_found:
    'the "kid" is not in the JWKS: the token comes from another tenant or environment, or the provider rotated ' +
    'keys it does not publish yet',
  signature_invalid:
    'the token was altered, or signed by a key with the same kid that the JWKS does not hold',
  algorithm_not_allowed: 'configure the provider to sign with RS256, PS256, ES256 or EdDSA',
  token_lifetime_too_long: 'shorten the access token lifetime at the provider (at most 24 h)',
  discovery_failed: 'set the issuer exactly as the provider publishes it in its metadata',
  authorization_server_unavailable: "check the provider's jwks_uri is reachable from this machine",
}

export async function runDoctor(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      issuer: { type: 'string' },
      audience: { type: 'string' },
      config: { type: 'string' },
      token: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    console.log(HELP)
    return
  }
  const token = values.token === '-' ? (await text(process.stdin)).trim() : values.token
  const guardOptions = values.config
    ? await optionsFromConfig(values.config)
    : optionsFromFlags(values.issuer, values.audience)
  if (values.json) {
    const report = await diagnose(guardOptions, token)
    console.log(JSON.stringify(report, null, 2))
    if (!report.ok) process.exitCode = 1
    return
  }
  // For people: each check is printed as it completes, since a provider that does not answer takes seconds.
  const paint = painter()
  console.log(formatHead(guardOptions, token))
  const report = await diagnose(guardOptions, token, (check) => console.log(formatCheck(check, paint)))
  console.log(formatVerdict(report, paint))
  if (!report.ok) process.exitCode = 1
}

function optionsFromFlags(issuer: string | undefined, audience: string | undefined): GuardOptions {
  const env = {
    ...process.env,
    ...(issuer === undefined ? {} : { OAUTH_ISSUER_URL: issuer }),
    ...(audience === undefined ? {} : { OAUTH_AUDIENCE: audience }),
  }
  if (!env.OAUTH_ISSUER_URL?.trim()) failWith('usage', 'give --issuer (or set OAUTH_ISSUER_URL) or --config')
  const audiences = env.OAUTH_AUDIENCE?.split(',').map((a) => a.trim())
  const first = audiences?.[0]
  const resource = first && isResourceUrl(first) ? first : PLACEHOLDER_RESOURCE
  const options = guardOptionsFromEnv(env, resource)
  return audiences ? options : { ...options, allowAnyAudience: true }
}

/** The guard's options exactly as `gatehouse serve` builds them from the file and the environment. */
async function optionsFromConfig(path: string): Promise<GuardOptions> {
  const { guardOptionsFor, loadGatewayConfig } = await import('../gateway/config.ts')
  const config = await loadGatewayConfig({ config: path }, process.env)
  const resource = config.publicUrl ?? `http://${config.address}:${config.port}/mcp`
  const options = guardOptionsFor(config.guard, resource)
  if (!config.authorizationServer) return options
  return { ...options, authorizationServers: [{ issuer: new URL(resource).origin }] }
}

const isResourceUrl = (value: string): boolean =>
  URL.canParse(value) &&
  /^https?:$/.test(new URL(value).protocol) &&
  !value.endsWith('/') &&
  !value.includes('#')

/** The issuer to diagnose, refused before any request when it cannot be one. */
function issuerOf(options: GuardOptions): string {
  const issuer = options.authorizationServers[0]?.issuer
  if (issuer === undefined) return failWith('usage', 'no authorization server is configured')
  if (!/^https?:$/.test(URL.parse(issuer)?.protocol ?? ''))
    failWith(
      'usage',
      `issuer ${JSON.stringify(issuer)} is not an http(s) URL: give it exactly as the provider publishes it, e.g. https://your-tenant.auth0.com/`,
    )
  return issuer
}

/** The audiences a token is checked against; undefined: any (no audience was given). */
const audiencesOf = (options: GuardOptions) =>
  options.allowAnyAudience ? undefined : (options.audiences ?? [options.resource])

/**
 * Every check for one issuer and, when given, one token. Never throws for what it diagnoses. `onCheck` sees
 * each check as soon as it is decided, in the report's order.
 */
export async function diagnose(
  options: GuardOptions,
  token?: string,
  onCheck: (check: DoctorCheck) => void = () => {},
): Promise<DoctorReport> {
  const issuer = issuerOf(options)
  const checks: DoctorCheck[] = []
  const add = (...decided: DoctorCheck[]) => {
    for (const check of decided) {
      checks.push(check)
      onCheck(check)
    }
  }
  await metadataLocations(issuer, add)
  const metadata = await guardDiscovery(issuer, add)
  if (metadata) {
    add(await jwksCheck(metadata))
    add(pkceCheck(metadata), registrationCheck(metadata))
  }
  const audiences = audiencesOf(options)
  const report: DoctorReport = { issuer, audiences, checks, ok: false }
  if (token !== undefined) {
    report.token = decode(token)
    add(await tokenVerdict(options, token))
  }
  if (audiences === undefined)
    add({
      name: 'audience',
      status: 'warn',
      detail: 'no audience given: a token is checked against any audience, which a server must never do',
      fix: 'pass --audience (the MCP URL or the API identifier the provider puts in "aud")',
    })
  report.ok = checks.every((check) => check.status !== 'fail')
  return report
}

/** Each location clients try, in their order; the first that answers decides, as for clients. */
async function metadataLocations(issuer: string, add: (check: DoctorCheck) => void): Promise<void> {
  let answered = false
  for (const url of metadataUrls(issuer)) {
    const name = `metadata ${url.href}`
    let status: number
    let document: Record<string, unknown> | undefined
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5000), redirect: 'manual' })
      status = response.status
      document = response.ok ? ((await response.json()) as Record<string, unknown>) : undefined
    } catch (error) {
      add({ name, status: 'warn', detail: `unreachable or not JSON: ${(error as Error).message}` })
      continue
    }
    if (!document) {
      add({
        name,
        status: answered ? 'pass' : 'warn',
        detail: `HTTP ${status}: clients try the next location`,
      })
      continue
    }
    const exact = document.issuer === issuer
    add(
      exact
        ? { name, status: 'pass', detail: `issuer ${JSON.stringify(issuer)}, as configured` }
        : {
            name,
            status: answered ? 'warn' : 'fail',
            detail: `declares issuer ${JSON.stringify(document.issuer)}, configured ${JSON.stringify(issuer)}`,
            fix: 'set the issuer byte for byte as this document writes it (RFC 8414 §3.3): a trailing slash counts',
          },
    )
    answered = true
  }
}

/** The guard's own discovery: what `gatehouse serve` would conclude at start. */
async function guardDiscovery(issuer: string, add: (check: DoctorCheck) => void) {
  try {
    const metadata = await discoverAuthorizationServer(issuer)
    add({
      name: 'discovery',
      status: 'pass',
      detail: 'the guard finds the metadata and the issuer matches',
    })
    return metadata
  } catch (error) {
    if (!isGuardError(error)) throw error
    add({
      name: 'discovery',
      status: 'fail',
      code: error.code,
      detail: error.message,
      fix: FIXES[error.code],
    })
    return undefined
  }
}

async function jwksCheck(metadata: AuthorizationServerMetadata): Promise<DoctorCheck> {
  if (!metadata.jwks_uri)
    return {
      name: 'jwks',
      status: 'fail',
      detail: 'the metadata has no jwks_uri',
      fix: FIXES.discovery_failed,
    }
  const warnings: string[] = []
  try {
    await new RemoteKeySet(new URL(metadata.jwks_uri), { onWarning: (m) => warnings.push(m) }).load()
  } catch (error) {
    if (!isGuardError(error)) throw error
    return { name: 'jwks', status: 'fail', code: error.code, detail: error.message, fix: FIXES[error.code] }
  }
  const detail = `${metadata.jwks_uri} loads${warnings.length ? `; ${warnings.join('; ')}` : ''}`
  return warnings.length
    ? { name: 'jwks', status: 'warn', detail, fix: 'remove or fix the keys the guard skips' }
    : { name: 'jwks', status: 'pass', detail }
}

function pkceCheck(metadata: AuthorizationServerMetadata): DoctorCheck {
  const methods = metadata.code_challenge_methods_supported
  const ok = Array.isArray(methods) && methods.includes('S256')
  return ok
    ? { name: 'pkce', status: 'pass', detail: 'code_challenge_methods_supported includes S256' }
    : {
        name: 'pkce',
        status: 'fail',
        detail: `code_challenge_methods_supported is ${JSON.stringify(methods)}: MCP clients refuse a server without S256`,
        fix: 'enable PKCE with S256 at the provider, and make sure its metadata says so',
      }
}

function registrationCheck(metadata: AuthorizationServerMetadata): DoctorCheck {
  const ways = [
    metadata.client_id_metadata_document_supported === true ? 'client ID metadata documents' : '',
    typeof metadata.registration_endpoint === 'string' ? `DCR at ${metadata.registration_endpoint}` : '',
  ].filter(Boolean)
  return ways.length
    ? { name: 'registration', status: 'pass', detail: ways.join(', ') }
    : {
        name: 'registration',
        status: 'warn',
        detail:
          'neither registration_endpoint nor client_id_metadata_document_supported: clients must be pre-registered',
        fix: 'enable dynamic client registration or CIMD, or register each MCP client by hand',
      }
}

function decode(token: string): DoctorReport['token'] {
  const parts = token.split('.')
  if (parts.length !== 3) return { opaque: true }
  const part = (segment: string | undefined) => {
    try {
      return JSON.parse(Buffer.from(segment ?? '', 'base64url').toString('utf8'))
    } catch {
      return '(not JSON)'
    }
  }
  return { header: part(parts[0]), claims: part(parts[1]) }
}

/** The guard itself, built from the same options, decides: the doctor never second-guesses it. */
async function tokenVerdict(options: GuardOptions, token: string): Promise<DoctorCheck> {
  const silent = { warn: () => {}, info: () => {} }
  try {
    const guard = await createGuard({ ...options, cacheSeconds: 0, logger: silent })
    const verified = await guard.verifyToken(token)
    return {
      name: 'token',
      status: 'pass',
      detail: `the guard accepts it: sub ${verified.subject ?? '(none)'}, aud ${verified.audience.join(' ')}, scope ${verified.scopes.join(' ') || '(none)'}`,
    }
  } catch (error) {
    if (!isGuardError(error)) throw error
    return { name: 'token', status: 'fail', code: error.code, detail: error.message, fix: FIXES[error.code] }
  }
}

const MARK: Record<CheckStatus, string> = { pass: 'PASS', fail: 'FAIL', warn: 'WARN' }

const plain: Paint = (_tone, text) => text

/** What is known before any request: the issuer, the audiences, and the token decoded (not verified). */
export function formatHead(options: GuardOptions, token: string | undefined): string {
  const lines = [`Issuer: ${issuerOf(options)}`, `Audiences: ${audiencesOf(options)?.join(', ') ?? '(any)'}`]
  const decoded = token === undefined ? undefined : decode(token)
  if (decoded && 'opaque' in decoded) lines.push('Token: opaque (not a JWT)')
  else if (decoded) {
    lines.push(`Token header: ${JSON.stringify(decoded.header)}`)
    lines.push(`Token claims: ${JSON.stringify(decoded.claims, withDates, 2)}`)
  }
  lines.push('')
  return lines.join('\n')
}

/** One check: its mark, what was found and, for a failure or a warning, the fix. */
export function formatCheck(check: DoctorCheck, paint: Paint = plain): string {
  const line = `${paint(check.status, MARK[check.status])}  ${check.name}: ${check.detail}${check.code ? ` [${check.code}]` : ''}`
  return check.fix && check.status !== 'pass' ? `${line}\n      fix: ${check.fix}` : line
}

export const formatVerdict = (report: DoctorReport, paint: Paint = plain): string =>
  `\n${report.ok ? paint('pass', 'All checks pass.') : paint('fail', 'Some checks fail: see the fixes above.')}`

/** exp, iat and nbf are shown with their date, for people. */
function withDates(key: string, value: unknown): unknown {
  return ['exp', 'iat', 'nbf'].includes(key) && typeof value === 'number'
    ? `${value} (${new Date(value * 1000).toISOString()})`
    : value
}
