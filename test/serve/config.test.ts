import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { stringify } from 'yaml'
import { SERVE_HELP } from '../../src/cli/serve.ts'
import { type GatewayFlags, loadGatewayConfig } from '../../src/gateway/config.ts'
import { gatehouse, tempDir } from '../support/embedded-gateway.ts'

const STDIO: GatewayFlags = { command: ['node', 'server.js'] }

async function load(
  flags: GatewayFlags,
  file: Record<string, unknown> = {},
  env: Record<string, string> = {},
) {
  const path = join(await tempDir('serve-config'), 'gatehouse.yaml')
  await writeFile(path, stringify(file))
  return loadGatewayConfig({ ...STDIO, ...flags, config: path }, env)
}

describe('gatehouse serve: the embedded authorization server settings', () => {
  it('runs the embedded server when no external one is configured, with the settings mapped', async () => {
    const config = await load(
      { dataDir: 'state' },
      {
        storage: { url: 'sqlite:as.db' },
        authorization_server: {
          scopes: ['mcp', 'files'],
          signing_algorithm: 'EdDSA',
          ttl: { access_token: 300, refresh_token: 86400, exchanged_token: 60 },
          refresh_reuse_interval: 0,
          login: {
            local_accounts: true,
            upstream: [
              {
                id: 'corp',
                name: 'Corp',
                issuer: 'https://corp.example.com',
                client_id: 'a',
                client_secret: 'b',
              },
            ],
          },
          registration: { enabled: false },
          cimd: { rate_limit: { limit: 5, window_seconds: 30 } },
          scope_grants: [
            { scopes: ['files:write'], users: ['alice'] },
            { scopes: ['admin'], claim: { name: 'groups', value: 'admins', provider: 'corp' } },
          ],
          token_exchange: [
            { clients: ['api-gateway'], audiences: ['https://orders.example'], scopes: ['files'] },
          ],
        },
      },
      { GATEHOUSE_SECRET: 's'.repeat(32) },
    )
    const embedded = config.authorizationServer
    assert.deepEqual(embedded?.storage, {
      dataDir: join(process.cwd(), 'state'),
      url: 'sqlite:as.db',
      secret: 's'.repeat(32),
    })
    assert.equal(embedded?.signingAlgorithm, 'EdDSA')
    assert.deepEqual(embedded?.ttl, { accessToken: 300, refreshToken: 86400, exchangedToken: 60 })
    assert.deepEqual(embedded?.tokenExchange, [
      { clients: ['api-gateway'], audiences: ['https://orders.example'], scopes: ['files'] },
    ])
    assert.equal(embedded?.refreshReuseIntervalSeconds, 0)
    assert.deepEqual(embedded?.login, {
      localAccounts: true,
      identityProviders: [
        { id: 'corp', name: 'Corp', issuer: 'https://corp.example.com', clientId: 'a', clientSecret: 'b' },
      ],
    })
    assert.deepEqual(embedded?.registration, { enabled: false })
    assert.deepEqual(embedded?.cimd, { rateLimit: { limit: 5, windowSeconds: 30 } })
    assert.deepEqual(embedded?.scopeGrants, [
      { scopes: ['files:write'], users: ['alice'] },
      { scopes: ['admin'], claim: { name: 'groups', value: 'admins', provider: 'corp' } },
    ])
    // Trusted once, by the gateway, as the server it starts (with its keys in process): none here.
    assert.deepEqual(config.guard.authorizationServers, [])
    assert.deepEqual(config.guard.scopes, ['mcp', 'files'])
  })

  it('leaves the embedded server off when an external issuer is configured', async () => {
    const fromEnv = await load({}, {}, { OAUTH_ISSUER_URL: 'https://idp.example.com/' })
    const fromFile = await load({}, { transport: { auth: { servers: ['https://idp.example.com/'] } } })
    assert.equal(fromEnv.authorizationServer, undefined)
    assert.equal(fromFile.authorizationServer, undefined)
  })

  const invalid: {
    name: string
    flags?: GatewayFlags
    file?: Record<string, unknown>
    env?: Record<string, string>
    message: string | RegExp
  }[] = [
    {
      name: '--dev on a non-loopback address',
      flags: { dev: true, address: '0.0.0.0' },
      message:
        '--dev listens on loopback only (127.0.0.1 or ::1), not 0.0.0.0: it signs anyone in as the test user',
    },
    {
      name: '--dev with a public URL elsewhere',
      flags: { dev: true, publicUrl: 'https://mcp.example.com/mcp' },
      message:
        '--dev needs a loopback public URL, not https://mcp.example.com/mcp: it signs anyone in as the test user',
    },
    {
      name: '--dev with an external issuer',
      flags: { dev: true },
      env: { OAUTH_ISSUER_URL: 'https://idp.example.com/' },
      message:
        '--dev runs the embedded authorization server: unset OAUTH_ISSUER_URL and transport.auth.servers',
    },
    {
      name: 'a short secret',
      env: { GATEHOUSE_SECRET: 'short' },
      message: 'GATEHOUSE_SECRET must be at least 32 characters, e.g. the output of: openssl rand -base64 32',
    },
    {
      name: 'an unknown storage URL',
      file: { storage: { url: 'mysql://db' } },
      message: 'storage.url must be sqlite:<file> or postgres://user:password@host/database',
    },
    {
      name: 'a shared state URL that is not Redis',
      file: { shared_state: { redis_url: 'http://redis:6379' } },
      message: 'shared_state.redis_url must be redis://[user:password@]host:port[/db] or rediss://…',
    },
    {
      name: 'an unknown shared state setting',
      file: { shared_state: { url: 'redis://redis:6379' } },
      message: 'shared_state: unknown setting url; known: redis_url, key_prefix',
    },
    {
      name: 'an unknown authorization server setting',
      file: { authorization_server: { scope: ['mcp'] } },
      message:
        'authorization_server: unknown setting scope; known: scopes, signing_algorithm, ttl, refresh_reuse_interval, token_rate_limit, login, registration, cimd, clients, token_exchange, scope_grants, console, vault',
    },
    {
      name: 'an unknown lifetime',
      file: { authorization_server: { ttl: { access: 60 } } },
      message: /^authorization_server.ttl: unknown setting access; known: access_token, /,
    },
    ...[-1, 1.5, 301, 'thirty'].map((value) => ({
      name: `a refresh reuse interval of ${JSON.stringify(value)}`,
      file: { authorization_server: { refresh_reuse_interval: value } },
      message: `authorization_server.refresh_reuse_interval must be an integer from 0 to 300, got ${JSON.stringify(value)}`,
    })),
    {
      name: 'a scope grant with an unknown key',
      file: { authorization_server: { scope_grants: [{ scopes: ['admin'], user: ['alice'] }] } },
      message: 'authorization_server.scope_grants[0]: unknown setting user; known: scopes, users, claim',
    },
    {
      name: 'a scope grant naming nobody',
      file: { authorization_server: { scope_grants: [{ scopes: ['admin'] }] } },
      message:
        'authorization_server.scope_grants[0] names nobody: give users: [<username>, …] or claim: { name, value }',
    },
    {
      name: 'a scope grant on the claim of an unknown provider',
      file: {
        authorization_server: {
          scope_grants: [{ scopes: ['admin'], claim: { name: 'groups', value: 'admins', provider: 'okta' } }],
        },
      },
      message:
        'authorization_server.scope_grants[0].claim.provider okta is not an identity provider (login.upstream); known: none',
    },
    {
      name: 'a console without the embedded authorization server',
      file: { authorization_server: { console: { admins: ['alice'] } } },
      env: { OAUTH_ISSUER_URL: 'https://idp.example', OAUTH_AUDIENCE: 'https://mcp.example/mcp' },
      message:
        'authorization_server.console signs administrators in at the embedded authorization server: unset OAUTH_ISSUER_URL and transport.auth.servers, or remove the console',
    },
    {
      name: 'scopes given twice',
      file: { authorization_server: { scopes: ['a'] }, transport: { auth: { scopes: ['b'] } } },
      message: 'give the scopes once: authorization_server.scopes or transport.auth.scopes, not both',
    },
  ]
  for (const { name, flags = {}, file = {}, env = {}, message } of invalid) {
    it(`refuses ${name}`, async () => {
      await assert.rejects(load(flags, file, env), (error: Error) => {
        if (typeof message === 'string') assert.equal(error.message, message)
        else assert.match(error.message, message)
        return true
      })
    })
  }

  it('the CLI prints a refused setting as one line and exits 1', async () => {
    const refused = await gatehouse(['serve', '--dev', '--address', '0.0.0.0', '--', 'node', 'server.js'])
    assert.equal(refused.code, 1)
    assert.equal(
      refused.stderr,
      'gatehouse: --dev listens on loopback only (127.0.0.1 or ::1), not 0.0.0.0: it signs anyone in as the test user\n',
    )
  })

  it('documents the new flags, settings and variables in gatehouse serve --help', () => {
    for (const documented of [
      '--data-dir',
      '--dev',
      'data_dir:',
      'storage:',
      'secret:',
      'authorization_server:',
      'signing_algorithm:',
      'ttl:',
      'refresh_reuse_interval:',
      'local_accounts:',
      'upstream:',
      'registration:',
      'cimd:',
      'clients:',
      'scope_grants:',
      'GATEHOUSE_DATA_DIR',
      'GATEHOUSE_STORAGE_URL',
      'GATEHOUSE_SECRET',
    ]) {
      assert.ok(SERVE_HELP.includes(documented), `${documented} is missing from the help`)
    }
  })
})

describe('gatehouse serve: shared_state', () => {
  it('is off by default: one instance keeps its state in memory', async () => {
    assert.equal((await load({}, {})).sharedState, undefined)
  })

  it('takes the Redis URL from the file or GATEHOUSE_REDIS_URL, with the default key prefix', async () => {
    assert.deepEqual((await load({}, { shared_state: { redis_url: 'redis://redis:6379/2' } })).sharedState, {
      redisUrl: 'redis://redis:6379/2',
      keyPrefix: 'gatehouse:',
    })
    const fromEnv = await load(
      {},
      { shared_state: { key_prefix: 'prod:' } },
      { GATEHOUSE_REDIS_URL: 'rediss://r:6380' },
    )
    assert.deepEqual(fromEnv.sharedState, { redisUrl: 'rediss://r:6380', keyPrefix: 'prod:' })
  })
})
