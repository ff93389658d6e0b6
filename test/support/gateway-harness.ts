import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { stringify } from 'yaml'
import { type GatewayFlags, loadGatewayConfig } from '../../src/gateway/config.ts'
import { createGatewayLogger } from '../../src/gateway/logger.ts'
import { type Gateway, startGateway } from '../../src/gateway/server.ts'
import { startTestIdp, type TestIdp } from './idp.ts'

/** The audience the test IdP issues tokens for and the gateways accept (`OAUTH_AUDIENCE`). */
export const AUDIENCE = 'https://mcp.gatehouse.test/mcp'
export const ALL_SCOPES = 'mcp math admin'
export const EVERYTHING_BIN = new URL('../../node_modules/.bin/mcp-server-everything', import.meta.url)
  .pathname
export const NODE = process.execPath

/** Whether a process exists (EPERM still means it does). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

export const startIdp = (): Promise<TestIdp> => startTestIdp({ resources: { [AUDIENCE]: ALL_SCOPES } })

/** A token for `subject` signed with the IdP's own key, for a second user (client credentials give one). */
export function tokenFor(idp: TestIdp, subject: string, scope: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return idp.sign({
    iss: idp.issuer,
    sub: subject,
    aud: AUDIENCE,
    client_id: 'test-client',
    scope,
    iat: now,
    exp: now + 300,
    jti: crypto.randomUUID(),
  })
}

export interface LogCapture {
  lines: string[]
  write(line: string): void
}

export const logCapture = (): LogCapture => {
  const lines: string[] = []
  return { lines, write: (line) => void lines.push(line) }
}

/**
 * A gateway built the way `gatehouse serve` builds it: flags, environment and a YAML file through
 * `loadGatewayConfig`, listening on a random port, logging into `log` (debug level) when given.
 */
export async function startTestGateway(
  idp: TestIdp,
  flags: GatewayFlags,
  file: Record<string, unknown> = {},
  log?: LogCapture,
): Promise<Gateway> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-gateway-'))
  const path = join(dir, 'gatehouse.yaml')
  await writeFile(path, stringify({ transport: { type: 'streamable_http', port: 0 }, ...file }))
  const config = await loadGatewayConfig(
    { ...flags, config: path },
    // The test IdP's tokens come from client credentials (no user): these tests are about proxying.
    { OAUTH_ISSUER_URL: idp.issuer, OAUTH_AUDIENCE: AUDIENCE, GATEHOUSE_ALLOW_MACHINE_CLIENTS: 'true' },
  )
  const logger = createGatewayLogger(log ? 'debug' : 'silent', log)
  return startGateway(config, { logger })
}

export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** server-everything in its Streamable HTTP mode, as its own process. */
export async function startEverythingHttp(): Promise<{
  url: string
  child: ChildProcess
  close(): Promise<void>
}> {
  const port = await freePort()
  const child = spawn(NODE, [EVERYTHING_BIN, 'streamableHttp'], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
      if (stderr.includes('listening on port')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`server-everything exited with ${code}: ${stderr}`)))
  })
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    child,
    async close() {
      if (child.exitCode !== null) return
      child.kill('SIGKILL')
      await once(child, 'exit')
    },
  }
}

/** The MCP SDK v1 client, connected through the gateway with a bearer token. */
export async function connectClient(resource: string, token: string): Promise<Client> {
  const client = new Client({ name: 'gatehouse-test', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(resource), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  })
  await client.connect(transport)
  return client
}

export const transportOf = (client: Client): StreamableHTTPClientTransport =>
  client.transport as StreamableHTTPClientTransport

/** A raw JSON-RPC POST, for the status codes and headers the SDK hides. */
export function postRpc(
  resource: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(resource, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

export const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
}
