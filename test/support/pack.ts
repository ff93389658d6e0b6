import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const REPO = new URL('../../', import.meta.url).pathname
/**
 * npm, npx and an installed bin's `#!/usr/bin/env node` all run on the Node that runs the test. Without
 * NODE_TEST_CONTEXT, a project's own `node --test` reports to its stdout instead of to this test runner.
 */
const { NODE_TEST_CONTEXT: _, ...inherited } = process.env
export const ENV = { ...inherited, PATH: `${dirname(process.execPath)}:${process.env.PATH}` }

/** Runs a command to completion and returns its stdout; a non-zero exit rejects with its output. */
export async function sh(command: string, args: string[], cwd: string): Promise<string> {
  const { stdout } = await run(command, args, { cwd, env: ENV, maxBuffer: 16 * 1024 * 1024 })
  return stdout
}

/**
 * The package as npm publishes it: `npm pack` (which builds dist/ through prepack) into `destination`.
 * Returns the tarball's path and the files it holds.
 */
export async function packTarball(destination: string): Promise<{ tarball: string; files: string[] }> {
  const [packed] = JSON.parse(
    await sh('npm', ['pack', '--json', '--pack-destination', destination], REPO),
  ) as {
    filename: string
    files: { path: string }[]
  }[]
  if (!packed) throw new Error('npm pack --json printed no package')
  return { tarball: join(destination, packed.filename), files: packed.files.map((f) => f.path) }
}
