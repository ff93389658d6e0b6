import { execFile } from 'node:child_process'
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './gateway-harness.ts'

const run = promisify(execFile)
const PG_ROOT = '/usr/lib/postgresql'

export interface OwnPostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string
  /** Stops the server at once (as a crash would: no checkpoint), leaving its data. */
  stop(): Promise<void>
  start(): Promise<void>
  /** Stops it and deletes its data. */
  destroy(): Promise<void>
}

/** The newest installed server's bin directory, or undefined when none is installed. */
async function binDirectory(): Promise<string | undefined> {
  const versions = await readdir(PG_ROOT).catch(() => [])
  const newest = versions.sort((a, b) => Number(a) - Number(b)).at(-1)
  return newest && join(PG_ROOT, newest, 'bin')
}

/**
 * A PostgreSQL cluster of the test's own, in a temporary directory on a free loopback port, so a test can
 * stop and start it without touching the shared server. initdb refuses to run as root: as root the cluster
 * belongs to the `postgres` system user (runuser). Undefined when no server is installed.
 */
export async function startOwnPostgres(): Promise<OwnPostgres | undefined> {
  const bin = await binDirectory()
  if (!bin) return undefined
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-pg-'))
  const asRoot = process.getuid?.() === 0
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres'])
    const { stdout: gid } = await run('id', ['-g', 'postgres'])
    await chown(dir, Number(stdout), Number(gid))
  }
  const pg = (tool: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : run(join(bin, tool), args)
  const port = await freePort()
  const data = join(dir, 'data')
  await pg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`
  const start = async () => {
    await pg('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start'])
  }
  const stop = async () => {
    await pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
  }
  await start()
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start,
    stop,
    destroy: async () => {
      await stop().catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
    },
  }
}
