import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { startServe } from '../../src/cli/embedded_server.ts'
import { type GatewayFlags, loadGatewayConfig } from '../../src/gateway/config.ts'
import { createGatewayLogger } from '../../src/gateway/logger.ts'
import type { Gateway } from '../../src/gateway/server.ts'
import type { Harness } from '../auth-server/harness.ts'
import { EVERYTHING_BIN, type LogCapture, NODE } from './gateway-harness.ts'

export const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname

export const tempDir = (prefix: string) => mkdtemp(join(tmpdir(), `gatehouse-${prefix}-`))

/**
 * `gatehouse serve` in process with the embedded authorization server (no external issuer in the
 * environment), server-everything over stdio behind it, on a random loopback port unless `flags.port`;
 * logging into `log` (debug level) when given.
 */
export async function startEmbeddedGateway(
  flags: GatewayFlags,
  file: Record<string, unknown> = {},
  log?: LogCapture,
): Promise<Gateway> {
  const path = join(await tempDir('config'), 'gatehouse.yaml')
  await writeFile(path, stringify(file))
  const config = await loadGatewayConfig(
    { port: '0', command: [NODE, EVERYTHING_BIN], ...flags, config: path },
    {},
  )
  return startServe(config, createGatewayLogger(log ? 'debug' : 'silent', log))
}

/** The auth-server test helpers (authorize, token, register) need only the issuer and the resource. */
export const asHarness = (gateway: Gateway) =>
  ({
    issuer: new URL(gateway.resource).origin,
    origin: new URL(gateway.resource).origin,
    resource: gateway.resource,
  }) as Harness

/** Runs the `gatehouse` CLI to completion; `input` is written to its stdin; `env` is all it sees besides PATH. */
export async function gatehouse(args: string[], input = '', env: Record<string, string> = {}) {
  const child = spawn(NODE, [MAIN, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: 'pipe' })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk
  })
  child.stdin.end(input)
  const [code] = (await once(child, 'exit')) as [number]
  return { code, stdout, stderr }
}
