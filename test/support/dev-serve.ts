import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { MAIN } from './embedded-gateway.ts'
import { EVERYTHING_BIN } from './gateway-harness.ts'

export interface DevServe {
  child: ChildProcess
  /** The MCP URL and the issuer, read from the development banner. */
  resource: string
  issuer: string
  stop(): Promise<void>
}

/**
 * `gatehouse serve --dev` in a child process on a random port, with server-everything over stdio behind it;
 * `env` adds to its environment (PATH only otherwise); `main` is the script that runs the command (the clone's
 * sources by default, or an installed bin), run in `cwd`.
 */
export async function startDevServe(
  options: { env?: Record<string, string>; main?: string; cwd?: string } = {},
): Promise<DevServe> {
  const { env = {}, main = MAIN, cwd } = options
  const child = spawn(
    process.execPath,
    [main, 'serve', '--dev', '--port', '0', '--', process.execPath, EVERYTHING_BIN],
    {
      cwd,
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  const { resource, issuer } = await readBanner(child)
  return {
    child,
    resource,
    issuer,
    stop: async () => {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    },
  }
}

function readBanner(child: ChildProcess): Promise<{ resource: string; issuer: string }> {
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  return new Promise((resolve, reject) => {
    child.stderr?.on('data', (chunk: string) => {
      stderr += chunk
      const resource = /MCP URL: (\S+)/.exec(stderr)?.[1]
      const issuer = /Issuer: +(\S+)/.exec(stderr)?.[1]
      if (resource && issuer) resolve({ resource, issuer })
    })
    child.once('exit', (code) => reject(new Error(`gatehouse serve --dev exited with ${code}: ${stderr}`)))
  })
}
