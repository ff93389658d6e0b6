import assert from 'node:assert/strict'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { parse, stringify } from 'yaml'
import { guardOptionsFor, guardSettings } from '../../src/config/apollo.ts'
import { GatewayConfigError } from '../../src/config/errors.ts'
import { loadSettings } from '../../src/config/load.ts'
import { guardOptionsFromEnv } from '../../src/guard/env.ts'
import { GuardError } from '../../src/guard/errors.ts'

const RESOURCE = 'https://mcp.example.com/mcp'

/** The guard's options from a `transport.auth` block, read from a file as `gatehouse serve` reads it. */
async function guardOptionsFromAuthBlock(auth: unknown, resource: string) {
  const path = join(await mkdtemp(join(tmpdir(), 'gatehouse-apollo-')), 'mcp.yaml')
  await writeFile(path, stringify({ transport: { auth } }))
  const { settings } = await loadSettings({ config: path }, {})
  return guardOptionsFor(guardSettings(settings.transport.auth ?? {}), resource)
}

describe("Apollo MCP Server's transport.auth block", () => {
  test('an Apollo mcp.yaml is read as it is', async () => {
    const file = parse(`
transport:
  type: streamable_http
  port: 8000
  auth:
    servers:
      - https://auth.example.com/
    audiences:
      - https://mcp.example.com/mcp
    allow_any_audience: false
    scopes: [read, write]
    scope_mode: require_any
    resource: https://mcp.example.com/mcp
    resource_documentation: https://docs.example.com/mcp
    allow_anonymous_mcp_discovery: true
    disable_auth_token_passthrough: true
`)
    assert.deepEqual(await guardOptionsFromAuthBlock(file.transport.auth, 'https://ignored.example/mcp'), {
      resource: RESOURCE,
      authorizationServers: [{ issuer: 'https://auth.example.com/' }],
      audiences: [RESOURCE],
      allowAnyAudience: false,
      scopes: ['read', 'write'],
      scopeMode: 'require_any',
      resourceDocumentation: 'https://docs.example.com/mcp',
    })
  })

  test("Gatehouse's own keys: server objects, introspection, implications", async () => {
    const options = await guardOptionsFromAuthBlock(
      {
        servers: [
          {
            issuer: 'https://idp.example.com',
            accept_plain_jwt: true,
            introspection: { client_id: 'rs', client_secret: 's3cret' },
          },
        ],
        scope_implications: { 'files:write': ['files:read'] },
        dpop_required: true,
      },
      RESOURCE,
    )
    assert.deepEqual(options, {
      resource: RESOURCE,
      authorizationServers: [
        {
          issuer: 'https://idp.example.com',
          acceptPlainJwt: true,
          introspection: { clientId: 'rs', clientSecret: 's3cret' },
        },
      ],
      scopeImplications: { 'files:write': ['files:read'] },
      dpop: { required: true },
    })
  })

  const invalid: [string, unknown, string][] = [
    ['not a mapping', 'servers', 'transport.auth must be a mapping'],
    [
      'an empty list of servers',
      { servers: [] },
      'transport.auth.servers must list at least one authorization server issuer URL',
    ],
    [
      'a misspelt key',
      { servers: ['https://a.example'], audience: ['x'] },
      'transport.auth: unknown setting audience; known: servers,',
    ],
    [
      'scopes not a list',
      { servers: ['https://a.example'], scopes: 'read' },
      'transport.auth.scopes must be a list',
    ],
    [
      'allow_any_audience as a string',
      { servers: ['https://a.example'], allow_any_audience: 'yes' },
      'transport.auth.allow_any_audience must be true or false',
    ],
    [
      'introspection without a secret',
      { servers: [{ issuer: 'https://a.example', introspection: { client_id: 'rs' } }] },
      'transport.auth.servers[0].introspection.client_secret is required',
    ],
    [
      'a server without issuer',
      { servers: [{ jwks_uri: 'https://a.example/jwks' }] },
      'transport.auth.servers[0].issuer is required',
    ],
  ]
  for (const [name, block, message] of invalid) {
    test(`refused with a message naming the key: ${name}`, async () => {
      await assert.rejects(
        guardOptionsFromAuthBlock(block, RESOURCE),
        (error: unknown) => error instanceof GatewayConfigError && error.message.startsWith(message),
      )
    })
  }
})

describe('environment variables', () => {
  test('OAUTH_ISSUER_URL alone: the resource is the only audience', () => {
    assert.deepEqual(guardOptionsFromEnv({ OAUTH_ISSUER_URL: 'https://idp.example.com' }, RESOURCE), {
      resource: RESOURCE,
      authorizationServers: [{ issuer: 'https://idp.example.com' }],
    })
  })

  test('OAUTH_AUDIENCE sets the accepted audiences (comma-separated)', () => {
    const options = guardOptionsFromEnv(
      { OAUTH_ISSUER_URL: 'https://idp.example.com', OAUTH_AUDIENCE: 'api://mcp, other' },
      RESOURCE,
    )
    assert.deepEqual(options.audiences, ['api://mcp', 'other'])
  })

  test('a missing OAUTH_ISSUER_URL says what to set', () => {
    assert.throws(
      () => guardOptionsFromEnv({ OAUTH_ISSUER_URL: ' ' }, RESOURCE),
      (error: unknown) =>
        error instanceof GuardError &&
        error.code === 'config_invalid' &&
        error.detail.startsWith('OAUTH_ISSUER_URL is not set'),
    )
  })
})
