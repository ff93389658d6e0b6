import assert from 'node:assert/strict'
import { test } from 'node:test'
import { resolveOptions } from '../../src/auth-server/options.ts'
import {
  ConnectionProvider,
  checkVaultConnections,
  type VaultConnectionOptions,
} from '../../src/auth-server/vault/provider.ts'
import { SECRET } from './harness.ts'

const base: VaultConnectionOptions = {
  id: 'github',
  name: 'GitHub',
  authorizationEndpoint: 'https://github.com/login/oauth/authorize',
  tokenEndpoint: 'https://github.com/login/oauth/access_token',
  clientId: 'c',
  clientSecret: 's',
  scopes: ['repo'],
}

test('vault connections are checked at start, each refusal naming the connection and the fix', () => {
  const refused = (connections: VaultConnectionOptions[], message: RegExp) =>
    assert.throws(() => checkVaultConnections(connections), { code: 'vault_connection_invalid', message })
  refused(
    [{ ...base, id: 'Git Hub' }],
    /^vault connection "Git Hub": id must be 1 to 32 of a-z, 0-9 and '-'$/,
  )
  refused([base, base], /^vault connection "github": is declared twice$/)
  refused([{ ...base, tokenEndpoint: undefined }], /give issuer \(discovery\) or both authorization_endpoint/)
  refused(
    [{ ...base, issuer: 'https://github.com' }],
    /give issuer \(its discovery names the endpoints\) or the endpoints, not both/,
  )
  refused(
    [{ ...base, tokenEndpoint: 'http://github.com/token' }],
    /http:\/\/github.com\/token must be an https URL/,
  )
  refused(
    [{ ...base, header: { name: 'Authorization', value: 'Bearer token' } }],
    /a value containing \{access_token\}/,
  )
  refused([{ ...base, header: { name: 'Bad Header', value: '{access_token}' } }], /header needs a name/)
  for (const name of ['Host', 'mcp-session-id', 'X-Gatehouse-Identity', 'Cookie'])
    refused([{ ...base, header: { name, value: '{access_token}' } }], /is the MCP exchange's own/)
  checkVaultConnections([base, { ...base, id: 'local', tokenEndpoint: 'http://127.0.0.1:8080/token' }])
})

test('the header the upstream gets follows the connection template; Authorization: Bearer by default', () => {
  const redirect = 'https://mcp.example/interaction/connected/github'
  assert.deepEqual(new ConnectionProvider(base, redirect).header('gho_abc'), {
    name: 'authorization',
    value: 'Bearer gho_abc',
  })
  const custom = new ConnectionProvider(
    { ...base, header: { name: 'X-Api-Key', value: 'token {access_token}' } },
    redirect,
  )
  assert.deepEqual(custom.header('t1'), { name: 'x-api-key', value: 'token t1' })
})

test("Gatehouse's own sign-in clients: registered only while their page is on, their ids refused to declared clients", () => {
  const options = (clientId: string, on: boolean) => ({
    issuer: 'https://mcp.example.com',
    secret: SECRET,
    store: { oidcAdapter: () => ({}) } as never,
    resources: [{ url: 'https://mcp.example.com/mcp', scopes: ['mcp'] }],
    clients: [{ client_id: clientId, redirect_uris: ['https://app.example/cb'], scope: 'mcp' }],
    ...(on ? { console: { admins: ['root'] }, vault: { keys: [], connections: [base] } } : {}),
  })
  for (const id of ['gatehouse-console', 'gatehouse-connect']) {
    assert.throws(() => resolveOptions(options(id, true)), {
      code: 'options_invalid',
      message: new RegExp(`client_id ${id} is Gatehouse's own`),
    })
    assert.deepEqual(resolveOptions(options(id, false)).internalClientIds, new Set())
  }
  const on = resolveOptions(options('app', true))
  assert.deepEqual(on.internalClientIds, new Set(['gatehouse-console', 'gatehouse-connect']))
  const connect = on.clients.find((client) => client.client_id === 'gatehouse-connect')
  assert.deepEqual(connect?.redirect_uris, ['https://mcp.example.com/interaction/connect-sign-in'])
  assert.equal(connect?.token_endpoint_auth_method, 'none')
})
