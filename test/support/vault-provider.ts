import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider from 'oidc-provider'
import { generateJwk } from '../../src/auth-server/keys.ts'

/** The client Gatehouse's vault is registered as at the third-party provider. */
export const VAULT_CLIENT = { id: 'gatehouse-vault', secret: 'gatehouse-vault-secret-0123456789' }
/** The API's own client: it introspects the tokens it is given. */
const API_CLIENT = { id: 'acme-api', secret: 'acme-api-secret-0123456789' }
/** The account the user has at the third party. */
export const THIRD_PARTY_ACCOUNT = 'octocat'

export interface ThirdParty {
  issuer: string
  /** Starts the provider with Gatehouse's redirect URI registered (known once the gateway listens). */
  start(redirectUri: string): void
  /**
   * What reached the provider: successful refreshes, refused ones, revocation requests, and every request to
   * the token endpoint (also those answered 503 while it is down).
   */
  counts: { refreshes: number; invalidGrants: number; revocations: number; tokenRequests: number }
  /** While true, the token endpoint answers 503 (the provider is down). */
  down: boolean
  /** Token requests are held this long before the provider sees them, so that concurrent callers overlap. */
  delayMs: number
  /** RFC 7662 at the provider, as the API sees a token. */
  introspect(token: string): Promise<Record<string, unknown>>
  /** Ends every grant of the account at the provider: its refresh tokens are then `invalid_grant`. */
  revokeEverything(): Promise<void>
  close(): Promise<void>
}

/**
 * A third-party OAuth provider (the part GitHub or Google plays): a real `oidc-provider` on loopback with
 * authorization code + PKCE, rotated refresh tokens, revocation and introspection. Its user is always
 * `octocat`, who approves what is asked (the sign-in and consent at the third party are not what is tested).
 */
export async function startThirdParty(): Promise<ThirdParty> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  let provider: Provider | undefined
  let callback: ((req: IncomingMessage, res: ServerResponse) => void) | undefined
  const grants = new Set<string>()
  const third: ThirdParty = {
    issuer,
    counts: { refreshes: 0, invalidGrants: 0, revocations: 0, tokenRequests: 0 },
    down: false,
    delayMs: 0,
    start(redirectUri) {
      provider = new Provider(issuer, {
        jwks: { keys: [generateJwk('RS256')] },
        clients: [
          {
            client_id: VAULT_CLIENT.id,
            client_secret: VAULT_CLIENT.secret,
            redirect_uris: [redirectUri],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
          },
          {
            client_id: API_CLIENT.id,
            client_secret: API_CLIENT.secret,
            grant_types: [],
            response_types: [],
            redirect_uris: [],
          },
        ],
        scopes: ['openid', 'offline_access', 'repo', 'read:user'],
        features: {
          devInteractions: { enabled: false },
          revocation: { enabled: true, allowedPolicy: async () => true },
          introspection: { enabled: true, allowedPolicy: async () => true },
        },
        pkce: { required: () => true },
        issueRefreshToken: async () => true,
        rotateRefreshToken: true,
        interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
        findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
        cookies: { keys: ['third-party-cookie-key'] },
        ttl: { AccessToken: 3600, RefreshToken: 86_400, Grant: 86_400, Session: 86_400, Interaction: 600 },
      })
      provider.on('grant.success', (ctx) => {
        if (ctx.oidc.params?.grant_type === 'refresh_token') third.counts.refreshes += 1
      })
      provider.on('grant.error', (ctx, error) => {
        if (
          ctx.oidc.params?.grant_type === 'refresh_token' &&
          (error as { error?: string }).error === 'invalid_grant'
        )
          third.counts.invalidGrants += 1
      })
      provider.on('server_error', (_ctx, error) => console.error('third-party provider error', error))
      callback = provider.callback()
    },
    async introspect(token) {
      const response = await fetch(`${issuer}/token/introspection`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${API_CLIENT.id}:${API_CLIENT.secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ token }),
      })
      return (await response.json()) as Record<string, unknown>
    },
    async revokeEverything() {
      for (const grantId of grants) {
        const grant = await provider?.Grant.find(grantId)
        await grant?.destroy()
        await provider?.RefreshToken.adapter.revokeByGrantId(grantId)
      }
    },
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
  server.on('request', async (req, res) => {
    if (!provider || !callback) return void res.writeHead(503).end()
    if (req.method === 'POST' && req.url === '/token') third.counts.tokenRequests += 1
    if (third.down && req.url?.startsWith('/token')) return void res.writeHead(503).end()
    if (third.delayMs > 0 && req.url === '/token')
      await new Promise((resolve) => setTimeout(resolve, third.delayMs))
    if (req.method === 'POST' && req.url === '/token/revocation') third.counts.revocations += 1
    if (!req.url?.startsWith('/interaction/')) return callback(req, res)
    // The user at the third party signs in as octocat and approves what is asked.
    const details = await provider.interactionDetails(req, res)
    if (details.prompt.name === 'login') {
      await provider.interactionFinished(req, res, { login: { accountId: THIRD_PARTY_ACCOUNT } })
      return
    }
    const grant = new provider.Grant({
      accountId: THIRD_PARTY_ACCOUNT,
      clientId: details.params.client_id as string,
    })
    grant.addOIDCScope(String(details.params.scope))
    const grantId = await grant.save()
    grants.add(grantId)
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
  })
  return third
}

/** What the API behind the gateway was sent: the method and the Authorization header of each request. */
export interface ApiCall {
  method: string | undefined
  authorization: string | undefined
}

/**
 * A small MCP API behind the gateway: `whoami` introspects the bearer token it receives at the third-party
 * provider and answers what it says (active, sub, client_id, scope); every request is recorded.
 */
export async function startThirdPartyApi(third: ThirdParty) {
  const calls: ApiCall[] = []
  const server = createServer(async (req, res) => {
    if (req.method !== 'POST') return void res.writeHead(405).end()
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const message = JSON.parse(Buffer.concat(chunks).toString()) as { id?: number; method?: string }
    calls.push({ method: message.method, authorization: req.headers.authorization })
    if (message.id === undefined) return void res.writeHead(202).end()
    const answer = (result: unknown, headers: Record<string, string> = {}) =>
      res
        .writeHead(200, { 'content-type': 'application/json', ...headers })
        .end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }))
    if (message.method === 'initialize')
      return answer(
        {
          protocolVersion: '2025-11-25',
          capabilities: { tools: {} },
          serverInfo: { name: 'acme-api', version: '1' },
        },
        { 'mcp-session-id': `session-${calls.length}` },
      )
    if (message.method === 'tools/list')
      return answer({ tools: [{ name: 'whoami', inputSchema: { type: 'object' } }] })
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    const seen = token ? await third.introspect(token) : { active: false }
    const { active, sub, client_id, scope } = seen
    answer({ content: [{ type: 'text', text: JSON.stringify({ active, sub, client_id, scope }) }] })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    calls,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}
