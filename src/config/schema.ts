import * as z from 'zod/mini'

/**
 * The one schema of Gatehouse's configuration: the YAML file's shape (Apollo MCP Server's `transport` block
 * included), each setting's default, and the flag and environment variable that can give it instead. Flags
 * win over the environment, which wins over the file. `gatehouse serve --help` and docs/configuration.md are
 * generated from it (src/config/docs.ts); every object is strict, so a misspelt key stops the start.
 */

/** What the documentation says of a setting; `flag` and `env` also give it (see src/config/load.ts). */
export interface SettingDoc {
  description: string
  /** `--port`: the flag's value replaces the file's. */
  flag?: string
  /** `GATEHOUSE_PORT`: the variable's value replaces the file's (a flag wins over it). */
  env?: string
  /** The variable holds a comma-separated list. */
  list?: true
  /** The default, in words, when it is not a plain value (`default` in the schema documents itself). */
  defaultText?: string
}

const SETTINGS = z.registry<SettingDoc>()

const setting = <T extends z.ZodMiniType>(schema: T, doc: SettingDoc): T => {
  SETTINGS.add(schema, doc)
  return schema
}
const withDefault = <T extends z.ZodMiniType>(schema: T, value: z.output<T>, doc: SettingDoc) =>
  setting(z._default(schema, value as never), doc)

/** A whole-number setting from `min`, with its default and, when given, its variable. */
const whole = (min: number, value: number, description: string, env?: string) =>
  withDefault(integer(min), value, { description, ...(env ? { env } : {}) })

const show = (value: unknown) => JSON.stringify(value)

/** A non-empty string; "is required" when it is missing. */
const text = () =>
  z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a non-empty string') })
    .check(z.minLength(1, { error: 'must be a non-empty string' }))

const names = () =>
  z.custom<string[]>(
    (value) => Array.isArray(value) && value.every((name) => typeof name === 'string' && name !== ''),
    { error: 'must be a list of non-empty strings' },
  )

const asInteger = (value: unknown) =>
  typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value

/** A whole number from `min` to `max`; digits in a string (flags, variables) are read as one. */
const integer = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.pipe(
    z.custom<unknown>(
      (value) => {
        const number = asInteger(value)
        return typeof number === 'number' && Number.isInteger(number) && number >= min && number <= max
      },
      { error: (issue) => `must be an integer from ${min} to ${max}, got ${show(issue.input)}` },
    ),
    z.transform((value) => asInteger(value) as number),
  )

const BOOLEANS = new Map<unknown, boolean>([
  [true, true],
  ['true', true],
  ['1', true],
  [false, false],
  ['false', false],
  ['0', false],
])

/** true or false; `true`/`1`/`false`/`0` in a string (flags, variables) too. */
const boolean = () =>
  z.pipe(
    z.custom<unknown>((value) => BOOLEANS.has(value), {
      error: (issue) => `must be true or false, got ${show(issue.input)}`,
    }),
    z.transform((value) => BOOLEANS.get(value) as boolean),
  )

/** zod's numbers are finite. */
const finite = () => z.number({ error: 'must be a number' })

/** A strict mapping: a key it does not know stops the start, naming the known ones. Empty (null) is `{}`. */
const block = <S extends z.core.$ZodLooseShape>(shape: S) =>
  z.pipe(
    z.transform((value: unknown) => value ?? {}),
    z.strictObject(shape, {
      error: (issue) =>
        issue.code === 'unrecognized_keys'
          ? `unknown setting ${issue.keys.join(', ')}; known: ${Object.keys(shape).join(', ')}`
          : 'must be a mapping',
    }),
  )

const list = <T extends z.ZodMiniType>(element: T) =>
  z.pipe(
    z.transform((value: unknown) => value ?? []),
    z.array(element, { error: 'must be a list' }),
  )

const mapping = <T extends z.ZodMiniType>(value: T) =>
  z.pipe(
    z.transform((input: unknown) => input ?? {}),
    z.record(z.string(), value, { error: 'must be a mapping' }),
  )

export const DEFAULT_DATA_DIR = './.gatehouse'

/** The shortest secret accepted: it encrypts the signing keys and signs the cookies. */
export const MIN_SECRET_LENGTH = 32
export const secretMessage = () =>
  `must be at least ${MIN_SECRET_LENGTH} characters, e.g. the output of: openssl rand -base64 32`

const origin = (entry: string) => {
  const url = URL.parse(entry.trim())
  return !!url && (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === entry.trim()
}

// Apollo MCP Server's `transport.auth` keys are accepted as they are (`servers`, `audiences`,
// `allow_any_audience`, `scopes`, `scope_mode`, `resource`, `resource_documentation`, and its gateway switches),
// so a team moving from it keeps its file; the rest are Gatehouse's own.
const server = z.pipe(
  z.transform((value: unknown) => (typeof value === 'string' ? { issuer: value } : value)),
  block({
    issuer: text(),
    jwks_uri: z.optional(text()),
    accept_plain_jwt: z.optional(boolean()),
    introspection: z.optional(
      block({ client_id: text(), client_secret: text(), endpoint: z.optional(text()) }),
    ),
  }),
)

const authBlock = block({
  servers: setting(
    z.optional(
      z
        .array(server, { error: 'must be a list' })
        .check(z.minLength(1, { error: 'must list at least one authorization server issuer URL' })),
    ),
    {
      description:
        'issuers of an external identity provider (an issuer URL, or { issuer, jwks_uri, accept_plain_jwt, ' +
        'introspection: { client_id, client_secret, endpoint } }); none: the embedded authorization server runs',
      env: 'OAUTH_ISSUER_URL',
      list: true,
    },
  ),
  audiences: setting(z.optional(names()), {
    description: 'accepted token audiences',
    env: 'OAUTH_AUDIENCE',
    list: true,
    defaultText: 'the canonical MCP URL',
  }),
  allow_any_audience: setting(z.optional(boolean()), { description: 'accept tokens for any audience' }),
  accept_plain_jwt: setting(z.optional(boolean()), {
    description:
      'accept typ JWT access tokens (the default of Auth0, Okta, Entra, Keycloak) of any accepted audience from ' +
      'every server; without it they pass only when their aud is the MCP URL itself',
    env: 'OAUTH_ACCEPT_PLAIN_JWT',
    defaultText: 'false',
  }),
  scopes: setting(z.optional(names()), { description: 'scopes every request needs' }),
  scope_mode: setting(z.optional(text()), {
    description: 'require_all, require_any or disabled',
    defaultText: 'require_all',
  }),
  scope_implications: setting(z.optional(mapping(names())), {
    description: 'a scope that implies others, e.g. { files:write: [files:read] }',
  }),
  scopes_supported: setting(z.optional(names()), {
    description: 'scopes published in the metadata',
    defaultText: 'the scopes and default_tool_scopes',
  }),
  resource: setting(z.optional(text()), {
    description: 'the canonical MCP URL (when public_url is not given, it is this)',
  }),
  resource_name: setting(z.optional(text()), { description: 'a name for the protected resource metadata' }),
  resource_documentation: setting(z.optional(text()), {
    description: 'a documentation URL for the metadata',
  }),
  algorithms: setting(z.optional(names()), { description: 'accepted JWS algorithms' }),
  clock_skew_seconds: setting(z.optional(finite()), { description: 'tolerated clock skew' }),
  max_token_lifetime_seconds: setting(z.optional(finite()), {
    description: 'longest accepted token lifetime',
  }),
  dpop_required: setting(z.optional(boolean()), { description: 'refuse bearer tokens without DPoP' }),
  allow_anonymous_mcp_discovery: setting(z.optional(boolean()), {
    description: "Apollo's place for allow_anonymous_mcp_discovery",
  }),
  disable_auth_token_passthrough: setting(z.optional(boolean()), {
    description: "Apollo's switch: false means upstream_credentials.mode passthrough, true means none",
  }),
})

const rateLimit = (limit: number, windowSeconds: number, what: string) =>
  setting(z.optional(block({ limit: integer(1), window_seconds: integer(1) })), {
    description: `${what} per window`,
    defaultText: `{ limit: ${limit}, window_seconds: ${windowSeconds} }`,
  })

const lifetime = (description: string) => setting(z.optional(integer(1)), { description })

/** A third-party OAuth provider users connect an account at, for the token vault. */
const vaultConnection = block({
  id: text(),
  name: text(),
  issuer: z.optional(text()),
  authorization_endpoint: z.optional(text()),
  token_endpoint: z.optional(text()),
  revocation_endpoint: z.optional(text()),
  client_id: text(),
  client_secret: text(),
  scopes: withDefault(names(), [], { description: 'scopes asked for at the provider' }),
  authorization_params: setting(z.optional(mapping(z.string({ error: 'must be a string' }))), {
    description: 'extra authorization request parameters, e.g. { access_type: offline, prompt: consent }',
  }),
  header: setting(z.optional(block({ name: text(), value: text() })), {
    description: 'what the upstream gets',
    defaultText: '{ name: Authorization, value: "Bearer {access_token}" }',
  }),
})

const authorizationServer = block({
  scopes: setting(z.optional(names()), {
    description:
      'every request needs them; offered with the tools’ scopes (or transport.auth.scopes, not both)',
    defaultText: '[mcp]',
  }),
  signing_algorithm: setting(z.optional(text()), {
    description: 'ES256, EdDSA or RS256, for the key generated on first start',
    defaultText: 'ES256',
  }),
  ttl: setting(
    block({
      access_token: lifetime('access token lifetime, seconds'),
      authorization_code: lifetime('authorization code lifetime, seconds'),
      refresh_token: lifetime('refresh token lifetime, seconds'),
      session: lifetime('sign-in session lifetime, seconds'),
      grant: lifetime('grant lifetime, seconds'),
      interaction: lifetime('sign-in page lifetime, seconds'),
      id_token: lifetime('ID token lifetime, seconds'),
      registered_client: lifetime('registered client lifetime, seconds'),
      exchanged_token: lifetime(
        'token exchange: the longest lifetime of an exchanged token, seconds (default 300; never past its subject token)',
      ),
    }),
    { description: 'lifetimes in seconds' },
  ),
  // The authorization server's own limit is 300 too (refreshReuseIntervalSeconds in src/auth-server/options.ts).
  refresh_reuse_interval: setting(z.optional(integer(0, 300)), {
    description:
      'seconds in which a client may retry a refresh whose answer it lost and get a fresh set instead of losing the grant (0: off)',
    defaultText: '30',
  }),
  token_rate_limit: rateLimit(
    300,
    60,
    'token requests from one client address (raise it when many users share one address, e.g. behind a NAT)',
  ),
  login: block({
    local_accounts: setting(z.optional(boolean()), {
      description: 'the username and password form (gatehouse users add <name>)',
      defaultText: 'true when no upstream is given',
    }),
    upstream: setting(
      list(
        block({
          id: text(),
          name: text(),
          issuer: text(),
          client_id: text(),
          client_secret: text(),
          scope: z.optional(text()),
        }),
      ),
      {
        description:
          '"Continue with <name>" identity providers: { id, name, issuer, client_id, client_secret, scope }; ' +
          'the redirect URI to register is printed at start',
      },
    ),
  }),
  registration: block({
    enabled: setting(z.optional(boolean()), {
      description: 'dynamic client registration (RFC 7591)',
      defaultText: 'true',
    }),
    rate_limit: rateLimit(20, 60, 'registrations from one address'),
  }),
  cimd: block({
    enabled: setting(z.optional(boolean()), {
      description: 'URL client ids (client metadata documents)',
      defaultText: 'true',
    }),
    rate_limit: rateLimit(10, 60, 'fetches of one client id'),
  }),
  clients: setting(list(z.record(z.string(), z.unknown(), { error: 'must be a mapping' })), {
    description:
      'static clients, RFC 7591 metadata (checked by the authorization server); only these may use ' +
      'client_credentials; resources: [urls] (default the MCP URL); resource_server: true may introspect any token',
  }),
  token_exchange: setting(
    list(
      block({
        clients: names().check(z.minLength(1, { error: 'must list at least one client_id' })),
        audiences: names().check(z.minLength(1, { error: 'must list at least one audience' })),
        scopes: names().check(z.minLength(1, { error: 'must list at least one scope' })),
      }),
    ),
    {
      description:
        'RFC 8693 token exchange of a user’s MCP token for a short-lived JWT for a downstream API: ' +
        '{ clients: [declared clients with a secret], audiences: [API identifiers, the tokens’ aud], scopes: [what ' +
        'its tokens may carry, each also in the MCP token] }; anything else is refused',
    },
  ),
  scope_grants: setting(
    list(
      block({
        scopes: names().check(z.minLength(1, { error: 'must list at least one scope' })),
        users: z.optional(names()),
        claim: z.optional(block({ name: text(), value: text(), provider: z.optional(text()) })),
      }),
    ),
    {
      description:
        'who holds the tools’ scopes beyond the basic ones: { scopes, users: [names] } or ' +
        '{ scopes, claim: { name, value, provider } } (an upstream claim, a value or a list containing it)',
    },
  ),
  console: block({
    admins: setting(z.optional(names()), {
      description:
        'usernames who may use the admin console at /admin (sign-in at this server; federated: <provider id>:<subject>); none: no console',
      defaultText: '[] (console off)',
    }),
  }),
  vault: block({
    keys: setting(z.optional(text()), {
      description:
        'token vault encryption keys, "<id>:<base64 of 32 bytes>" separated by commas, the newest first (it encrypts; all decrypt)',
      env: 'GATEHOUSE_VAULT_KEYS',
    }),
    keys_file: setting(z.optional(text()), {
      description: 'a file with the vault keys, one "<id>:<base64 key>" per line, the newest first',
      env: 'GATEHOUSE_VAULT_KEYS_FILE',
    }),
    refresh_before_seconds: whole(0, 60, 'an access token expiring within this is refreshed before use'),
    connections: setting(list(vaultConnection), {
      description:
        'third-party OAuth providers users connect an account at (the token vault): { id, name, issuer or ' +
        'authorization_endpoint + token_endpoint (+ revocation_endpoint), client_id, client_secret, scopes, ' +
        'authorization_params, header }; the redirect URI to register is printed at start',
    }),
  }),
})

const credentialsMode = z.enum(['none', 'passthrough', 'exchange', 'vault'], {
  error: (issue) => `${show(issue.input)} must be none, passthrough, exchange or vault`,
})

const exchangeSetting = (description: string) => setting(z.optional(text()), { description })
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: (issue) => `${show(issue.input)} must be ${values.join(' or ')}` })

/** `upstream_credentials.exchange`: read by src/gateway/credentials/exchange.ts, which checks what goes together. */
const exchangeBlock = block({
  issuer: exchangeSetting(
    'the authorization server that exchanges (its metadata names the token endpoint); default the embedded one',
  ),
  token_endpoint: exchangeSetting('its token endpoint, instead of discovery through issuer'),
  profile: setting(z.optional(oneOf(['rfc8693', 'entra_obo'])), {
    description:
      'rfc8693 (token exchange: Gatehouse, Auth0, Keycloak) or entra_obo (Entra on-behalf-of: jwt-bearer grant, the API named by scope)',
    defaultText: 'rfc8693',
  }),
  client_id: exchangeSetting("the gateway's own client at that server"),
  client_secret: setting(z.optional(text()), {
    description: 'its secret (prefer the variable)',
    env: 'GATEHOUSE_EXCHANGE_CLIENT_SECRET',
  }),
  client_auth: setting(z.optional(oneOf(['client_secret_basic', 'client_secret_post', 'private_key_jwt'])), {
    description: 'how the gateway authenticates at the token endpoint',
    defaultText: 'client_secret_basic, or private_key_jwt with private_key_file',
  }),
  private_key_file: exchangeSetting('a PEM private key (RSA, P-256, P-384, Ed25519) for private_key_jwt'),
  key_id: exchangeSetting('the kid of that key, when the server wants one'),
  audience: setting(z.optional(text()), {
    description: "the upstream's audience: the exchanged token's aud (rfc8693)",
    defaultText: 'the upstream URL',
  }),
  target_parameter: setting(z.optional(oneOf(['audience', 'resource'])), {
    description:
      'the rfc8693 parameter that carries the audience: audience (Auth0, Keycloak) or resource (RFC 8707)',
    defaultText: 'audience',
  }),
  scope: exchangeSetting(
    'the scopes asked for (only narrows); entra_obo: required, e.g. api://<app id>/.default',
  ),
  subject_token_type: setting(z.optional(text()), {
    description: "rfc8693: the client token's type; Auth0 wants its exchange profile's URI",
    defaultText: 'urn:ietf:params:oauth:token-type:access_token',
  }),
  timeout_ms: whole(1, 10_000, 'the token endpoint must answer within this'),
  cache_size: whole(
    1,
    10_000,
    'exchanged tokens kept (per client token, audience and scope); the oldest goes',
  ),
})

const tool = block({
  scopes: withDefault(names(), [], {
    description: 'scopes a tools/call of this tool needs (else 403 insufficient_scope)',
  }),
  users_only: withDefault(boolean(), false, {
    description: 'never called by a machine client, even with the scopes; hidden from them',
  }),
})

/** The configuration file, with the flags and variables already laid over it (src/config/load.ts). */
export const settingsSchema = block({
  upstream: setting(z.optional(text()), {
    description: 'the upstream MCP endpoint (Streamable HTTP), e.g. http://127.0.0.1:3001/mcp',
    flag: '--upstream',
    env: 'GATEHOUSE_UPSTREAM',
  }),
  command: setting(z.optional(text()), {
    description: 'a stdio MCP server to run, one process per session (or the command after --)',
  }),
  args: withDefault(names(), [], { description: "the stdio command's arguments" }),
  env: withDefault(
    mapping(z.string({ error: 'must be a string' })),
    {},
    {
      description:
        "the stdio child's environment: these, plus PATH, HOME, USER, SHELL, TERM, TMPDIR, TZ, LANG, LC_* of the gateway's (nothing else)",
    },
  ),
  cwd: setting(z.optional(text()), { description: "the stdio child's working directory" }),
  stdio: block({
    shared: withDefault(boolean(), false, {
      description:
        'one stdio process for every session and user instead of one per session; the server cannot tell users apart (warned at start)',
      flag: '--stdio-shared',
      env: 'GATEHOUSE_STDIO_SHARED',
    }),
  }),
  transport: block({
    type: setting(
      z.optional(
        z.literal('streamable_http', {
          error: (issue) => `${show(issue.input)} is not supported; gatehouse serves streamable_http`,
        }),
      ),
      {
        description: "Apollo MCP Server's transport type; only streamable_http",
        defaultText: 'streamable_http',
      },
    ),
    port: withDefault(integer(0, 65_535), 8000, {
      description: 'port to listen on',
      flag: '--port',
      env: 'GATEHOUSE_PORT',
    }),
    address: withDefault(text(), '127.0.0.1', {
      description: 'address to listen on',
      flag: '--address',
      env: 'GATEHOUSE_ADDRESS',
    }),
    auth: z.optional(authBlock),
  }),
  public_url: setting(z.optional(text()), {
    description:
      'the canonical MCP URL clients use, e.g. https://mcp.example.com/mcp; the resource in the metadata and the token audience',
    flag: '--public-url',
    env: 'GATEHOUSE_PUBLIC_URL',
    defaultText: 'http://<address>:<port>/mcp',
  }),
  tools: setting(mapping(tool), {
    description: 'per tool: { scopes, users_only }; tools/list shows only the callable tools',
  }),
  default_tool_scopes: withDefault(names(), [], {
    description: 'scopes a tools/call needs for tools not listed',
  }),
  allow_anonymous_mcp_discovery: setting(z.optional(boolean()), {
    description: 'initialize and tools/list without a token',
    env: 'GATEHOUSE_ALLOW_ANONYMOUS_MCP_DISCOVERY',
    defaultText: 'false',
  }),
  allow_machine_clients: withDefault(boolean(), false, {
    description:
      'accept tokens a client got for itself (client credentials, no user: gty client_credentials, or sub = client_id); 403 otherwise',
    env: 'GATEHOUSE_ALLOW_MACHINE_CLIENTS',
  }),
  upstream_credentials: block({
    mode: setting(z.optional(credentialsMode), {
      description:
        'none: the token is stripped and the upstream gets the identity as X-Gatehouse-* headers and a signed ' +
        'X-Gatehouse-Identity JWT; passthrough forwards the client token (a spec violation; warned); exchange ' +
        "sends a token exchanged for the upstream's audience (see exchange); vault: the user's token at a " +
        "third-party provider (connection), from the embedded authorization server's token vault",
      env: 'GATEHOUSE_UPSTREAM_CREDENTIALS',
      defaultText: 'none',
    }),
    exchange: exchangeBlock,
    connection: setting(z.optional(text()), {
      description:
        'mode vault: the id of the authorization_server.vault.connections entry whose token the upstream gets',
    }),
  }),
  sessions: block({
    idle_timeout_seconds: whole(1, 900, 'an idle session is closed after this'),
    max_sessions: whole(1, 1000, 'sessions open at once'),
    max_sessions_per_user: setting(z.optional(integer(1)), {
      description: 'sessions of one subject (each a child process on stdio)',
      defaultText: '10, at most max_sessions',
    }),
    max_anonymous_sessions: whole(0, 16, 'sessions opened without a token (anonymous discovery)'),
    new_sessions_per_user_per_minute: whole(
      1,
      10,
      'above it 429 + Retry-After; anonymous callers count as one user',
    ),
    new_sessions_per_minute: whole(1, 120, 'for everyone together; above it 503 + Retry-After'),
  }),
  limits: block({
    max_body_bytes: whole(1, 1_048_576, 'largest request body', 'GATEHOUSE_MAX_BODY_BYTES'),
    max_batch_messages: whole(1, 100, 'messages in one JSON-RPC batch; more: 400'),
    upstream_timeout_ms: whole(
      1,
      30_000,
      "the upstream's headers, then each chunk of its answer, must come within this",
      'GATEHOUSE_UPSTREAM_TIMEOUT_MS',
    ),
    shutdown_grace_ms: whole(
      0,
      10_000,
      'in-flight requests get this long at shutdown; those still running then are answered shutting_down',
    ),
    stream_idle_timeout_ms: whole(
      0,
      300_000,
      'an idle GET stream is ended (0: never)',
      'GATEHOUSE_STREAM_IDLE_TIMEOUT_MS',
    ),
    headers_timeout_ms: whole(1, 10_000, 'request line and headers must arrive within it (else 408)'),
    request_timeout_ms: whole(1, 30_000, 'the whole request with its body; responses (SSE) are not cut'),
    keep_alive_timeout_ms: whole(1, 5_000, 'an idle connection between requests is closed'),
    max_anonymous_body_bytes: whole(
      1,
      65_536,
      'a body without a token (anonymous discovery) is read up to this, larger is refused unread (401); with a token, the token is checked before any of the body is read',
    ),
    max_anonymous_body_reads: whole(1, 64, 'bodies without a token read at once; more get 503'),
  }),
  tls: block({
    cert: setting(z.optional(text()), {
      description: 'PEM certificate file (with key)',
      env: 'GATEHOUSE_TLS_CERT',
    }),
    key: setting(z.optional(text()), { description: 'PEM key file (with cert)', env: 'GATEHOUSE_TLS_KEY' }),
  }),
  trust_proxy: withDefault(boolean(), false, {
    description:
      'the client address (logs, rate limits) is the last X-Forwarded-For entry, the one your proxy appended',
    env: 'GATEHOUSE_TRUST_PROXY',
  }),
  allowed_origins: withDefault(
    names().check(
      z.refine((entries) => entries.every(origin), {
        error: (issue) =>
          `entry ${show((issue.input as string[]).find((entry) => !origin(entry)))} must be an origin such as ` +
          'https://app.example.com (scheme, host and optional port; no path, no trailing slash)',
      }),
    ),
    [],
    {
      description:
        "browser origins besides the public URL's that may call /mcp and the authorization server; another Origin gets 403. " +
        "On a loopback bind, a Host other than the public URL's or localhost:<port> too",
      env: 'GATEHOUSE_ALLOWED_ORIGINS',
      list: true,
    },
  ),
  log_level: withDefault(text(), 'info', {
    description: 'trace, debug, info, warn, error',
    flag: '--log-level',
    env: 'GATEHOUSE_LOG_LEVEL',
  }),
  data_dir: withDefault(text(), DEFAULT_DATA_DIR, {
    description: "the embedded authorization server's directory (created 0700)",
    flag: '--data-dir',
    env: 'GATEHOUSE_DATA_DIR',
  }),
  storage: block({
    url: setting(
      z.optional(
        text().check(
          z.regex(/^(sqlite:|postgres:\/\/|postgresql:\/\/)/, {
            error: 'must be sqlite:<file> or postgres://user:password@host/database',
          }),
        ),
      ),
      {
        description: 'postgres://user:password@host/db for several instances',
        env: 'GATEHOUSE_STORAGE_URL',
        defaultText: 'SQLite <data_dir>/gatehouse.db',
      },
    ),
  }),
  shared_state: block({
    redis_url: setting(
      z.optional(
        text().check(
          z.regex(/^rediss?:\/\//, { error: 'must be redis://[user:password@]host:port[/db] or rediss://…' }),
        ),
      ),
      {
        description:
          'Redis for several instances: MCP session bindings and limits (HTTP upstream), DPoP replay, rate limits; while it is down those requests get 503',
        env: 'GATEHOUSE_REDIS_URL',
        defaultText: 'none: kept in memory (one instance)',
      },
    ),
    key_prefix: withDefault(
      text().check(z.regex(/^[\w:.-]+$/, { error: 'letters, digits and _ : . - only' })),
      'gatehouse:',
      {
        description: 'prepended to every Redis key, for several deployments on one Redis',
      },
    ),
  }),
  secret: setting(z.optional(text().check(z.minLength(MIN_SECRET_LENGTH, { error: secretMessage() }))), {
    description:
      '32+ characters encrypting the signing keys and signing cookies; several instances must share it (prefer the variable)',
    env: 'GATEHOUSE_SECRET',
    defaultText: 'generated into <data_dir>/secret (0600) on first start',
  }),
  authorization_server: authorizationServer,
})

export type Settings = z.output<typeof settingsSchema>
export type AuthBlock = z.output<typeof authBlock>

/** Given on the command line or in the environment only, not in the file. */
export const COMMAND_LINE: (SettingDoc & { name: string })[] = [
  {
    name: 'config',
    description: 'a YAML file with the settings below',
    flag: '--config',
    env: 'GATEHOUSE_CONFIG',
  },
  {
    name: 'dev',
    description:
      'development mode: loopback only, a temporary store, the test user signed in and every consent approved without a page (for test harnesses; never in production)',
    flag: '--dev',
  },
  { name: 'help', description: 'this help', flag: '-h, --help' },
]

/** A documented setting: its file key (`[]` for a list's entries, `<name>` for a mapping's), doc and default. */
export interface SettingEntry {
  path: string[]
  doc: SettingDoc
  default?: unknown
}

/**
 * Walks the schema for its documented settings, in the file's order. A key that is not a block and has no
 * documentation (nor a documented parent) is yielded with `doc` undefined, for the test that wants none.
 */
export function* settingsOf(
  schema: z.core.$ZodType,
  path: string[] = [],
  documented = false,
): Generator<SettingEntry | { path: string[]; doc: undefined }> {
  const doc = SETTINGS.get(schema as z.ZodMiniType)
  const def = schema._zod.def as z.core.$ZodTypeDef & Record<string, unknown>
  if (doc) yield { path, doc, ...(def.type === 'default' ? { default: def.defaultValue } : {}) }
  const inner = doc !== undefined || documented
  switch (def.type) {
    case 'default':
    case 'optional':
      yield* settingsOf(def.innerType as z.core.$ZodType, path, inner)
      return
    case 'pipe':
      yield* settingsOf(def.out as z.core.$ZodType, path, inner)
      return
    case 'array':
      yield* settingsOf(def.element as z.core.$ZodType, [...path, '[]'], inner)
      return
    case 'record':
      yield* settingsOf(def.valueType as z.core.$ZodType, [...path, '<name>'], inner)
      return
    case 'object':
      for (const [key, value] of Object.entries(def.shape as Record<string, z.core.$ZodType>)) {
        yield* settingsOf(value, [...path, key], inner)
      }
      return
    default:
      if (!inner) yield { path, doc: undefined }
  }
}
