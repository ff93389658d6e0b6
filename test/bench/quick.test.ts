import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'

const RUN = new URL('../../bench/run.ts', import.meta.url).pathname
const SECTIONS = ['targets', 'verify', 'http', 'gateway', 'gatewaySteps', 'memory', 'authServer'] as const

/** Every leaf value of a section, at any depth. */
function leaves(value: unknown): unknown[] {
  if (Array.isArray(value)) return value.flatMap(leaves)
  if (typeof value === 'object' && value !== null) return Object.values(value).flatMap(leaves)
  return [value]
}

// Proves the benchmarks still run and report; never how fast anything is.
test('npm run bench --quick runs every section and writes its JSON, report and chart', async () => {
  const out = await mkdtemp(join(tmpdir(), 'gatehouse-bench-'))
  try {
    await promisify(execFile)(process.execPath, [RUN, '--quick', '--out', out], {
      maxBuffer: 16 * 2 ** 20,
      timeout: 600_000,
    })
    const files = await readdir(out)
    const json = files.find((f) => f.endsWith('.json'))
    assert.ok(json, `no JSON among ${files.join(', ')}`)
    assert.ok(files.includes(json.replace(/\.json$/, '.svg')))
    assert.ok(files.includes(json.replace(/\.json$/, '.md')))
    const results = JSON.parse(await readFile(join(out, json), 'utf8')) as Record<string, unknown>
    assert.equal(results.quick, true)
    for (const section of SECTIONS) {
      const found = leaves(results[section])
      assert.ok(
        found.some((v) => typeof v === 'number'),
        `${section} has no figures`,
      )
      // JSON writes NaN and Infinity as null: a figure that was not measured.
      assert.ok(!found.includes(null), `${section} has a figure that is not a number`)
    }
    for (const target of results.targets as { what: string; figure: number; ratio: number }[]) {
      assert.ok(
        Number.isFinite(target.figure) && target.figure > 0,
        `${target.what}: figure ${target.figure}`,
      )
      assert.ok(Number.isFinite(target.ratio), `${target.what}: ratio ${target.ratio}`)
    }
    const svg = await readFile(join(out, json.replace(/\.json$/, '.svg')), 'utf8')
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  } finally {
    await rm(out, { recursive: true, force: true })
  }
})
