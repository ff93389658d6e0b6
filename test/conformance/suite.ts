import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdir, readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { browse, CookieJar } from '../auth-server/harness.ts'

const CONFORMANCE = fileURLToPath(new URL('../../node_modules/.bin/conformance', import.meta.url))

export interface SuiteRun {
  status: number | null
  /** Every non-empty line the suite printed, in order. */
  lines: string[]
  /** `scenario -> "N passed, M failed"` from the summary. */
  scenarios: Map<string, string>
  /** The suite's last line, `Total: N passed, M failed`. */
  total: string
}

/** A loopback port nobody listens on now, for the suite's callback server (its redirect URI must be known first). */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/**
 * Runs `conformance authorization` as a child process and plays the browser: the authorization URL it prints
 * is followed with a cookie jar through the (immediately approving) interactions to the callback, which is
 * then requested, as the browser would.
 */
export async function runAuthorizationSuite(options: {
  issuer: string
  clientId: string
  resource: string
  port: number
}): Promise<SuiteRun> {
  const child = spawn(
    process.execPath,
    [
      CONFORMANCE,
      'authorization',
      '--url',
      options.issuer,
      '--client-id',
      options.clientId,
      '--resource',
      options.resource,
      '-p',
      String(options.port),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  let browsing: Promise<void> | undefined
  let browserError: unknown
  const authorizePrefix = `${options.issuer}/authorize?`
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => {
    output += chunk
  })
  child.stdout.on('data', (chunk: string) => {
    output += chunk
    // The suite prints the URL before its callback server listens; the browser waits for both.
    const url = output.split('\n').find((line) => line.startsWith(authorizePrefix))
    if (url && output.includes('Callback server started') && !browsing) {
      browsing = playBrowser(url.trim()).catch((error: unknown) => {
        browserError = error
        // Otherwise the suite waits five minutes for a callback that will never come.
        child.kill()
      })
    }
  })
  const [status] = (await once(child, 'exit')) as [number | null]
  await browsing
  if (browserError) throw browserError
  const lines = output
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line !== '')
  const scenarios = new Map<string, string>()
  for (const line of lines) {
    const match = /^[✓✗] ([a-z-]+): (\d+ passed, \d+ failed)$/.exec(line)
    if (match) scenarios.set(match[1] as string, match[2] as string)
  }
  return { status, lines, scenarios, total: lines.at(-1) ?? '' }
}

async function playBrowser(authorizationUrl: string): Promise<void> {
  const response = await browse(authorizationUrl, new CookieJar())
  const callback = response.headers.get('location')
  if (!callback) throw new Error(`the authorization ended without a redirect: ${response.status}`)
  await (await fetch(callback)).arrayBuffer()
}

/** `scenario -> check key -> status` from the suite's `-o` directory; a key is the check id, `#n` on repeats. */
export type CheckResults = Map<string, Map<string, string>>

/**
 * Runs `conformance server` on `url` for one suite (`active` is the default one, `draft` the 2026-07-28
 * scenarios) or one scenario, and reads each check's status from the result files it writes.
 */
export async function runServerSuite(
  url: string,
  which: { suite: 'active' | 'draft' } | { scenario: string },
  outDir: string,
): Promise<CheckResults> {
  const selection = 'suite' in which ? ['--suite', which.suite] : ['--scenario', which.scenario]
  const child = spawn(process.execPath, [CONFORMANCE, 'server', '--url', url, ...selection, '-o', outDir], {
    stdio: ['ignore', 'ignore', 'ignore'],
  })
  await once(child, 'exit')
  const results: CheckResults = new Map()
  for (const dir of await readdir(outDir)) {
    // `server-<scenario>-<ISO time with dashes>`
    const scenario = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(dir)?.[1]
    if (!scenario) continue
    const checks = JSON.parse(await readFile(join(outDir, dir, 'checks.json'), 'utf8')) as {
      id: string
      status: string
    }[]
    const statuses = new Map<string, string>()
    for (const check of checks) {
      let key = check.id
      for (let n = 2; statuses.has(key); n++) key = `${check.id}#${n}`
      statuses.set(key, check.status)
    }
    results.set(scenario, statuses)
  }
  return results
}

/** `passed/failed` checks over every scenario, for the report. */
export function countChecks(results: CheckResults): { passed: number; failed: number; scenarios: number } {
  let passed = 0
  let failed = 0
  for (const checks of results.values())
    for (const status of checks.values()) {
      if (status === 'SUCCESS') passed++
      else if (status === 'FAILURE') failed++
    }
  return { passed, failed, scenarios: results.size }
}

/** Success, then a warning (a SHOULD missed), then anything else (a failure, a note, a skip, no result). */
const RANK: Record<string, number> = { SUCCESS: 0, WARNING: 1 }
const rank = (status: string | undefined) => RANK[status ?? ''] ?? 2

/** Every check that did better in `direct` than in `through` (missing there counts), as `scenario: check status`. */
export function lostChecks(direct: CheckResults, through: CheckResults): string[] {
  const lost: string[] = []
  for (const [scenario, checks] of direct)
    for (const [key, status] of checks) {
      const there = through.get(scenario)?.get(key)
      if (rank(status) < 2 && rank(there) > rank(status))
        lost.push(`${scenario}: ${key} ${there ?? 'missing'}`)
    }
  return lost
}
