import assert from 'node:assert/strict'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { stringify } from 'yaml'
import { SERVE_HELP } from '../../src/cli/serve.ts'
import { type GatewayFlags, guardOptionsFor, loadGatewayConfig } from '../../src/gateway/config.ts'

const ENV = { OAUTH_ISSUER_URL: 'https://idp.example.com/' }

async function fileWith(content: unknown): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), 'gatehouse-config-')), 'gatehouse.yaml')
  await writeFile(path, typeof content === 'string' ? content : stringify(content))
  return path
}

describe('gateway configuration', () => {
  it('takes flags over the environment over the file', async () => {
    const config = await fileWith({
      upstream: 'http://file/mcp',
      transport: { port: 7000, address: '0.0.0.0' },
    })
    const fromFile = await loadGatewayConfig({ config }, ENV)
    assert.equal(fromFile.port, 7000)
    assert.equal(fromFile.address, '0.0.0.0')
    assert.equal(fromFile.upstream.kind === 'http' && fromFile.upstream.url.href, 'http://file/mcp')
    const fromEnv = await loadGatewayConfig(
      { config },
      { ...ENV, GATEHOUSE_PORT: '7001', GATEHOUSE_UPSTREAM: 'http://env/mcp' },
    )
    assert.equal(fromEnv.port, 7001)
    assert.equal(fromEnv.upstream.kind === 'http' && fromEnv.upstream.url.href, 'http://env/mcp')
    const fromFlags = await loadGatewayConfig(
      { config, port: '7002', upstream: 'http://flag/mcp' },
      { ...ENV, GATEHOUSE_PORT: '7001' },
    )
    assert.equal(fromFlags.port, 7002)
    assert.equal(fromFlags.upstream.kind === 'http' && fromFlags.upstream.url.href, 'http://flag/mcp')
  })

  it("accepts Apollo MCP Server's transport block, auth included", async () => {
    const config = await fileWith({
      upstream: 'http://127.0.0.1:3001/mcp',
      transport: {
        type: 'streamable_http',
        port: 8123,
        auth: {
          servers: ['https://tenant.auth0.com/'],
          audiences: ['https://mcp.example.com/mcp'],
          scopes: ['mcp'],
          resource: 'https://mcp.example.com/mcp',
          allow_anonymous_mcp_discovery: true,
        },
      },
    })
    const gateway = await loadGatewayConfig({ config }, {})
    assert.equal(gateway.port, 8123)
    assert.equal(gateway.publicUrl, 'https://mcp.example.com/mcp')
    assert.equal(gateway.allowAnonymousDiscovery, true)
    const guard = guardOptionsFor(gateway.guard, 'https://ignored.example/mcp')
    assert.equal(guard.resource, 'https://mcp.example.com/mcp')
    assert.deepEqual(guard.authorizationServers, [{ issuer: 'https://tenant.auth0.com/' }])
    assert.deepEqual(guard.scopes, ['mcp'])
  })

  it('reads a stdio command from after -- or from the file, with tool scopes and limits', async () => {
    const config = await fileWith({
      command: 'npx',
      args: ['-y', '@modelcontextprotocol/server-everything'],
      env: { DEBUG: '1' },
      tools: { 'get-env': { scopes: ['admin'] } },
      default_tool_scopes: ['mcp'],
      limits: { max_body_bytes: 4096, max_batch_messages: 7 },
    })
    const fromFile = await loadGatewayConfig({ config }, ENV)
    assert.deepEqual(fromFile.upstream, {
      kind: 'stdio',
      command: 'npx',
      args: ['-y', '@modelcontextprotocol/server-everything'],
      env: { DEBUG: '1' },
      cwd: undefined,
      shared: false,
    })
    assert.deepEqual(fromFile.tools, { 'get-env': ['admin'] })
    assert.deepEqual(fromFile.defaultToolScopes, ['mcp'])
    assert.equal(fromFile.limits.maxBodyBytes, 4096)
    assert.equal(fromFile.limits.maxBatchMessages, 7)
    const fromFlags = await loadGatewayConfig({ command: ['python', 'server.py'] }, ENV)
    assert.equal(fromFlags.limits.maxBatchMessages, 100)
    assert.equal(fromFlags.upstream.kind === 'stdio' && fromFlags.upstream.command, 'python')
    assert.equal(fromFlags.upstreamCredentials, 'none')
  })

  it('reads stdio.shared from the flag, the environment or the file (default false)', async () => {
    const command = ['node', 'server.js']
    const cases: { flags?: GatewayFlags; env?: Record<string, string>; file?: unknown; shared: boolean }[] = [
      { shared: false },
      { flags: { stdioShared: true }, shared: true },
      { env: { GATEHOUSE_STDIO_SHARED: 'true' }, shared: true },
      { file: { stdio: { shared: true } }, shared: true },
      { flags: { stdioShared: false }, env: { GATEHOUSE_STDIO_SHARED: 'true' }, shared: false },
      { env: { GATEHOUSE_STDIO_SHARED: 'false' }, file: { stdio: { shared: true } }, shared: false },
    ]
    for (const { flags = {}, env = {}, file = {}, shared } of cases) {
      const config = await loadGatewayConfig(
        { ...flags, command, config: await fileWith(file) },
        { ...ENV, ...env },
      )
      assert.equal(
        config.upstream.kind === 'stdio' && config.upstream.shared,
        shared,
        JSON.stringify({ flags, env, file }),
      )
    }
    await assert.rejects(
      loadGatewayConfig({ command, config: await fileWith({ stdio: { shared: 'yes' } }) }, ENV),
      { message: 'stdio.shared must be true or false, got "yes"' },
    )
    assert.match(SERVE_HELP, /shared: false +--stdio-shared, GATEHOUSE_STDIO_SHARED\n/)
  })

  const invalid: {
    name: string
    flags?: GatewayFlags
    file?: unknown
    env?: Record<string, string>
    message: RegExp
  }[] = [
    { name: 'no upstream', message: /^no upstream: give --upstream/ },
    {
      name: 'both upstreams',
      flags: { upstream: 'http://a/mcp', command: ['x'] },
      message: /either --upstream .* not both/,
    },
    {
      name: 'a non-http upstream',
      flags: { upstream: 'ftp://a/mcp' },
      message: /must be an http or https URL/,
    },
    { name: 'an unknown file key', file: { upstrem: 'http://a/mcp' }, message: /unknown setting upstrem/ },
    {
      name: 'a bad port',
      flags: { upstream: 'http://a/mcp', port: '70000' },
      message: /^--port must be an integer from 0 to 65535, got "70000"$/,
    },
    {
      name: 'another transport',
      file: { upstream: 'http://a/mcp', transport: { type: 'stdio' } },
      message: /transport.type "stdio" is not supported/,
    },
    {
      name: 'an unknown credentials mode',
      file: { upstream: 'http://a/mcp', upstream_credentials: { mode: 'forward' } },
      message: /^upstream_credentials.mode "forward" must be none, passthrough, exchange or vault$/,
    },
    {
      name: 'an unknown key of the exchange block',
      file: {
        upstream: 'http://a/mcp',
        upstream_credentials: { mode: 'exchange', exchange: { audiences: [] } },
      },
      message: /^upstream_credentials.exchange: unknown setting audiences; known: issuer, /,
    },
    {
      name: 'mode vault without a declared connection',
      env: {},
      file: { upstream: 'http://a/mcp', upstream_credentials: { mode: 'vault', connection: 'github' } },
      message:
        /^upstream_credentials.connection must name one of authorization_server.vault.connections \(none declared\)$/,
    },
    {
      name: 'mode vault with an external authorization server',
      file: {
        upstream: 'http://a/mcp',
        upstream_credentials: { mode: 'vault', connection: 'github' },
        transport: { auth: { servers: ['https://idp.example'] } },
      },
      message: /^upstream_credentials.mode vault needs the embedded authorization server/,
    },
    {
      name: 'a connection without mode vault',
      file: { upstream: 'http://a/mcp', upstream_credentials: { connection: 'github' } },
      message: /^upstream_credentials.connection is only for mode vault$/,
    },
    {
      name: 'vault connections without keys',
      env: {},
      file: {
        upstream: 'http://a/mcp',
        authorization_server: {
          vault: {
            connections: [
              {
                id: 'github',
                name: 'GitHub',
                issuer: 'https://github.example',
                client_id: 'c',
                client_secret: 's',
              },
            ],
          },
        },
      },
      message: /^authorization_server.vault: give the encryption keys once/,
    },
    {
      name: 'a per-user session limit of zero',
      file: { upstream: 'http://a/mcp', sessions: { max_sessions_per_user: 0 } },
      message: /^sessions.max_sessions_per_user must be an integer from 1 to/,
    },
    {
      name: 'a spawn rate of zero',
      file: { upstream: 'http://a/mcp', sessions: { new_sessions_per_user_per_minute: 0 } },
      message: /^sessions.new_sessions_per_user_per_minute must be an integer from 1 to/,
    },
    {
      name: 'a header timeout longer than the request timeout',
      file: { upstream: 'http://a/mcp', limits: { headers_timeout_ms: 5000, request_timeout_ms: 1000 } },
      message:
        /^limits.headers_timeout_ms \(5000\) must not exceed limits.request_timeout_ms \(1000\): the request timeout covers the headers too$/,
    },
    {
      name: 'an unknown limit',
      file: { upstream: 'http://a/mcp', limits: { body_timeout_ms: 1000 } },
      message: /body_timeout_ms/,
    },
    {
      name: 'a certificate without a key',
      file: { upstream: 'http://a/mcp', tls: { cert: 'c.pem' } },
      message: /TLS needs both/,
    },
    {
      name: 'a batch limit of 0',
      file: { upstream: 'http://a/mcp', limits: { max_batch_messages: 0 } },
      env: {},
      message: /limits\.max_batch_messages/,
    },
    {
      name: 'a public URL without a path',
      flags: { upstream: 'http://a/mcp', publicUrl: 'https://mcp.example.com/' },
      message: /needs the MCP path/,
    },
    ...(
      [
        ['tls', { cret: 'c.pem', key: 'k.pem' }, 'cret', 'cert, key'],
        ['upstream_credentials', { mod: 'passthrough' }, 'mod', 'mode'],
        ['sessions', { max_sesions: 5 }, 'max_sesions', 'idle_timeout_seconds, max_sessions,'],
        ['limits', { max_body: 5 }, 'max_body', 'max_body_bytes,'],
        ['stdio', { share: true }, 'share', 'shared'],
        ['storage', { uri: 'sqlite:x' }, 'uri', 'url'],
        ['transport', { adress: '0.0.0.0' }, 'adress', 'type, port, address, auth'],
        ['transport.auth', { scopes: ['mcp'], scope: 'mcp' }, 'scope', 'servers,'],
        ['tools.echo', { scope: ['mcp'] }, 'scope', 'scopes'],
      ] as const
    ).map(([block, value, key, known]) => {
      const [head, tail] = block.split('.') as [string, string | undefined]
      return {
        name: `a misspelled key in ${block}`,
        file: { upstream: 'http://a/mcp', [head]: tail ? { [tail]: value } : value },
        env: {},
        message: new RegExp(`${block.replace('.', '\\.')}: unknown setting ${key}; known: ${known}`),
      }
    }),
    {
      name: 'disable_auth_token_passthrough: true with mode passthrough',
      file: {
        upstream: 'http://a/mcp',
        upstream_credentials: { mode: 'passthrough' },
        transport: { auth: { servers: ['https://idp.example.com/'], disable_auth_token_passthrough: true } },
      },
      message:
        /^transport.auth.disable_auth_token_passthrough: true contradicts upstream_credentials.mode passthrough/,
    },
    {
      name: 'disable_auth_token_passthrough: false with mode none',
      file: {
        upstream: 'http://a/mcp',
        upstream_credentials: { mode: 'none' },
        transport: { auth: { servers: ['https://idp.example.com/'], disable_auth_token_passthrough: false } },
      },
      message:
        /^transport.auth.disable_auth_token_passthrough: false contradicts upstream_credentials.mode none/,
    },
    {
      name: 'an allowed origin with a path',
      file: { upstream: 'http://a/mcp', allowed_origins: ['https://app.example/'] },
      message: /^allowed_origins entry "https:\/\/app.example\/" must be an origin/,
    },
    {
      name: 'tool scopes that are not a list',
      file: { upstream: 'http://a/mcp', tools: { echo: { scopes: 'mcp' } } },
      message: /tools.echo.scopes must be a list/,
    },
    {
      name: 'users_only that is not true or false',
      file: { upstream: 'http://a/mcp', tools: { echo: { users_only: 'yes' } } },
      message: /^tools.echo.users_only must be true or false, got "yes"/,
    },
    {
      name: 'allow_machine_clients that is not true or false',
      file: { upstream: 'http://a/mcp', allow_machine_clients: 'maybe' },
      message: /^allow_machine_clients must be true or false, got "maybe"/,
    },
  ]
  for (const { name, flags = {}, file, env = ENV, message } of invalid) {
    it(`refuses ${name} with a message that names the setting`, async () => {
      const config = file === undefined ? undefined : await fileWith(file)
      await assert.rejects(loadGatewayConfig({ ...flags, config }, env), (error: Error) => {
        assert.match(error.message, message)
        return true
      })
    })
  }

  it("honours Apollo's disable_auth_token_passthrough: false is passthrough, true is none", async () => {
    const withSwitch = async (disable: boolean | undefined) =>
      (
        await loadGatewayConfig(
          {
            config: await fileWith({
              upstream: 'http://a/mcp',
              transport: {
                auth: {
                  servers: ['https://idp.example.com/'],
                  ...(disable === undefined ? {} : { disable_auth_token_passthrough: disable }),
                },
              },
            }),
          },
          {},
        )
      ).upstreamCredentials
    assert.equal(await withSwitch(undefined), 'none')
    assert.equal(await withSwitch(false), 'passthrough')
    assert.equal(await withSwitch(true), 'none')
  })

  it('defaults the per-user session limit to 10, anonymous sessions to 16, and new sessions to 10 a minute per user and 120 in all', async () => {
    const load = async (sessions: Record<string, number>) =>
      (await loadGatewayConfig({ config: await fileWith({ upstream: 'http://a/mcp', sessions }) }, ENV))
        .sessions
    assert.deepEqual(await load({}), {
      idleTimeoutSeconds: 900,
      maxSessions: 1000,
      maxSessionsPerUser: 10,
      maxAnonymousSessions: 16,
      newSessionsPerUserPerMinute: 10,
      newSessionsPerMinute: 120,
    })
    assert.equal((await load({ max_sessions: 5 })).maxSessionsPerUser, 5)
    assert.equal((await load({ max_sessions: 50, max_sessions_per_user: 20 })).maxSessionsPerUser, 20)
    assert.equal((await load({ max_anonymous_sessions: 0 })).maxAnonymousSessions, 0)
    assert.equal((await load({ new_sessions_per_minute: 30 })).newSessionsPerMinute, 30)
  })

  it('defaults the connection limits to seconds: headers 10 s, request 30 s, keep-alive 5 s, anonymous bodies 64 KiB, 64 read at once', async () => {
    const load = async (limits: Record<string, number>) =>
      (await loadGatewayConfig({ config: await fileWith({ upstream: 'http://a/mcp', limits }) }, ENV)).limits
    const defaults = await load({})
    assert.equal(defaults.headersTimeoutMs, 10_000)
    assert.equal(defaults.requestTimeoutMs, 30_000)
    assert.equal(defaults.keepAliveTimeoutMs, 5_000)
    assert.equal(defaults.maxAnonymousBodyBytes, 65_536)
    assert.equal(defaults.maxAnonymousBodyReads, 64)
    const set = await load({
      headers_timeout_ms: 2000,
      request_timeout_ms: 4000,
      keep_alive_timeout_ms: 1000,
      max_anonymous_body_bytes: 4096,
      max_anonymous_body_reads: 8,
    })
    assert.deepEqual(
      [
        set.headersTimeoutMs,
        set.requestTimeoutMs,
        set.keepAliveTimeoutMs,
        set.maxAnonymousBodyBytes,
        set.maxAnonymousBodyReads,
      ],
      [2000, 4000, 1000, 4096, 8],
    )
  })

  it('reads allowed_origins from the file or GATEHOUSE_ALLOWED_ORIGINS', async () => {
    const config = await fileWith({ upstream: 'http://a/mcp', allowed_origins: ['https://app.example'] })
    assert.deepEqual((await loadGatewayConfig({ config }, ENV)).allowedOrigins, ['https://app.example'])
    const fromEnv = await loadGatewayConfig(
      { config },
      { ...ENV, GATEHOUSE_ALLOWED_ORIGINS: 'http://localhost:6274, https://b.example:8443' },
    )
    assert.deepEqual(fromEnv.allowedOrigins, ['http://localhost:6274', 'https://b.example:8443'])
  })

  it('serves the embedded authorization server when no external issuer is configured', async () => {
    const external = await loadGatewayConfig({ upstream: 'http://a/mcp' }, ENV)
    assert.equal(external.authorizationServer, undefined)
    const embedded = await loadGatewayConfig({ upstream: 'http://a/mcp' }, {})
    assert.notEqual(embedded.authorizationServer, undefined)
  })

  it('documents every flag and file setting in gatehouse serve --help', () => {
    const settings = [
      '--upstream',
      '--port',
      '--address',
      '--public-url',
      '--config',
      '--log-level',
      '--help',
    ]
    const keys = [
      'upstream:',
      'command:',
      'args:',
      'env:',
      'cwd:',
      'transport:',
      'public_url:',
      'tools:',
      'default_tool_scopes:',
      'allow_anonymous_mcp_discovery:',
      'upstream_credentials:',
      'sessions:',
      'limits:',
      'tls:',
      'trust_proxy:',
      'log_level:',
      'allowed_origins:',
      'max_anonymous_sessions',
      'GATEHOUSE_ALLOWED_ORIGINS',
      'allow_machine_clients:',
      'GATEHOUSE_ALLOW_MACHINE_CLIENTS',
      'users_only',
    ]
    for (const documented of [...settings, ...keys, 'OAUTH_ISSUER_URL', 'OAUTH_AUDIENCE']) {
      assert.ok(SERVE_HELP.includes(documented), `${documented} is missing from the help`)
    }
  })
})

describe('one configuration schema (issue 8)', () => {
  it('the guard settings are data validated once at load, not a closure run on a placeholder URL and again after listen', async () => {
    const config = await loadGatewayConfig(
      { upstream: 'http://a/mcp', config: await fileWith({ transport: { auth: { scopes: ['mcp'] } } }) },
      ENV,
    )
    assert.equal(typeof config.guard, 'object')
    assert.deepEqual(structuredClone(config.guard), config.guard)
    assert.deepEqual(guardOptionsFor(config.guard, 'http://127.0.0.1:9/mcp'), {
      resource: 'http://127.0.0.1:9/mcp',
      authorizationServers: [{ issuer: 'https://idp.example.com/' }],
      scopes: ['mcp'],
    })
  })

  it('the embedded authorization server is trusted once, by the gateway that starts it: the settings trust none', async () => {
    const config = await loadGatewayConfig(
      { upstream: 'http://a/mcp', publicUrl: 'https://mcp.example.com/mcp' },
      {},
    )
    assert.notEqual(config.authorizationServer, undefined)
    assert.deepEqual(config.guard.authorizationServers, [])
    assert.deepEqual(config.guard.scopes, ['mcp'])
  })

  it('a refused value from a flag or a variable is named as it was given', async () => {
    await assert.rejects(
      loadGatewayConfig({ upstream: 'http://a/mcp' }, { ...ENV, GATEHOUSE_PORT: 'eighty' }),
      {
        message: 'GATEHOUSE_PORT must be an integer from 0 to 65535, got "eighty"',
      },
    )
    await assert.rejects(
      loadGatewayConfig(
        { upstream: 'http://a/mcp' },
        { ...ENV, GATEHOUSE_ALLOWED_ORIGINS: 'https://a.example/x' },
      ),
      { message: /^GATEHOUSE_ALLOWED_ORIGINS entry "https:\/\/a.example\/x" must be an origin/ },
    )
  })

  it('every variable wins over the file, upstream_credentials.mode included', async () => {
    const config = await loadGatewayConfig(
      { config: await fileWith({ upstream: 'http://a/mcp', upstream_credentials: { mode: 'none' } }) },
      { ...ENV, GATEHOUSE_UPSTREAM_CREDENTIALS: 'passthrough' },
    )
    assert.equal(config.upstreamCredentials, 'passthrough')
  })

  it('OAUTH_ISSUER_URL fills transport.auth.servers, so a file may give the rest of the block', async () => {
    const config = await loadGatewayConfig(
      { upstream: 'http://a/mcp', config: await fileWith({ transport: { auth: { scopes: ['files'] } } }) },
      { OAUTH_ISSUER_URL: 'https://idp.example.com/', OAUTH_AUDIENCE: 'api://mcp, other' },
    )
    assert.equal(config.authorizationServer, undefined)
    assert.deepEqual(config.guard.authorizationServers, [{ issuer: 'https://idp.example.com/' }])
    assert.deepEqual(config.guard.audiences, ['api://mcp', 'other'])
    assert.deepEqual(config.guard.scopes, ['files'])
  })

  it('OAUTH_ACCEPT_PLAIN_JWT accepts typ JWT tokens from every server, unless a server says otherwise', async () => {
    const config = await loadGatewayConfig(
      {
        upstream: 'http://a/mcp',
        config: await fileWith({
          transport: {
            auth: {
              servers: ['https://a.example/', { issuer: 'https://b.example/', accept_plain_jwt: false }],
            },
          },
        }),
      },
      { OAUTH_ACCEPT_PLAIN_JWT: 'true' },
    )
    assert.deepEqual(config.guard.authorizationServers, [
      { issuer: 'https://a.example/', acceptPlainJwt: true },
      { issuer: 'https://b.example/' },
    ])
  })

  const refused: [string, Record<string, unknown>, string | RegExp][] = [
    [
      'a misspelt key of an upstream provider',
      { authorization_server: { login: { upstream: [{ id: 'corp', clientid: 'x' }] } } },
      'authorization_server.login.upstream[0]: unknown setting clientid; known: id, name, issuer, client_id, client_secret, scope',
    ],
    [
      'a rate limit of zero',
      { authorization_server: { registration: { rate_limit: { limit: 0, window_seconds: 60 } } } },
      /^authorization_server\.registration\.rate_limit\.limit must be an integer from 1 to/,
    ],
    [
      'a lifetime that is not a number',
      { authorization_server: { ttl: { access_token: 'ten minutes' } } },
      /^authorization_server\.ttl\.access_token must be an integer from 1 to \d+, got "ten minutes"$/,
    ],
    ['a block that is not a mapping', { sessions: 5 }, 'sessions must be a mapping'],
  ]
  for (const [name, file, message] of refused) {
    it(`refuses ${name}, naming the setting`, async () => {
      const config = await fileWith({ upstream: 'http://a/mcp', ...file })
      await assert.rejects(loadGatewayConfig({ config }, {}), { message })
    })
  }
})
