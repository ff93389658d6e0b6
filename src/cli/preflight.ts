import { constants } from 'node:fs'
import { access } from 'node:fs/promises'
import { get as httpGet } from 'node:http'
import { get as httpsGet } from 'node:https'
import { delimiter, isAbsolute, resolve } from 'node:path'
import { GatewayConfigError } from '../config/errors.ts'
import type { UpstreamConfig } from '../gateway/config.ts'

/** How long the start-up probe waits for an HTTP upstream before warning. */
const PROBE_TIMEOUT_MS = 3000

/**
 * Refuses to start when the stdio command cannot be run: otherwise the gateway starts, and the first user
 * finds out after signing in, as a failed session.
 */
export async function checkStdioCommand(upstream: UpstreamConfig, env: NodeJS.ProcessEnv): Promise<void> {
  if (upstream.kind !== 'stdio' || process.platform === 'win32') return
  const { command } = upstream
  const cwd = upstream.cwd ?? process.cwd()
  if (command.includes('/')) {
    const path = isAbsolute(command) ? command : resolve(cwd, command)
    if (!(await executable(path)))
      throw new GatewayConfigError(
        `the stdio command ${path} does not exist or is not executable: fix the command after -- (or command: in the file)`,
      )
    return
  }
  const searchPath = upstream.env.PATH ?? env.PATH ?? ''
  const dirs = searchPath.split(delimiter).filter((dir) => dir !== '')
  for (const dir of dirs) if (await executable(resolve(cwd, dir, command))) return
  throw new GatewayConfigError(
    `the stdio command "${command}" is not on PATH (${searchPath || 'empty'}): install it, or give its full path after -- (or command: in the file)`,
  )
}

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * One request to an HTTP upstream at start, with node:http as the gateway uses: any HTTP answer will do (an
 * MCP endpoint answers a GET with 405 or a stream). Returns the warning to log when nothing answers, so the
 * operator learns it before a user does.
 */
export async function probeUpstream(upstream: UpstreamConfig): Promise<string | undefined> {
  if (upstream.kind !== 'http') return undefined
  const reason = await noAnswer(upstream.url)
  return reason === undefined
    ? undefined
    : `the upstream ${upstream.url.href} does not answer (${reason}): start it or fix --upstream (GATEHOUSE_UPSTREAM); until it answers, MCP requests get 502`
}

/** Undefined when the URL answers, else why not (the error code). */
function noAnswer(url: URL): Promise<string | undefined> {
  const get = url.protocol === 'https:' ? httpsGet : httpGet
  return new Promise((resolve) => {
    const request = get(
      url,
      { headers: { accept: 'text/event-stream' }, timeout: PROBE_TIMEOUT_MS },
      (response) => {
        response.destroy()
        resolve(undefined)
      },
    )
    request.on('timeout', () => request.destroy(new Error(`no answer in ${PROBE_TIMEOUT_MS} ms`)))
    request.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
  })
}
