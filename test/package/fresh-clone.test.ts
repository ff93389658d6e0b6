/** What a fresh clone needs beyond Node: a Chromium for the browser tests, found or asked for in one line. */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { findChromium } from '../support/browser.ts'

describe('browser tests: finding a Chromium', () => {
  let dir: string
  let first: string
  let second: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-chromium-'))
    first = join(dir, 'chromium')
    second = join(dir, 'google-chrome')
    await Promise.all([writeFile(first, ''), writeFile(second, '')])
  })
  after(() => rm(dir, { recursive: true, force: true }))

  it('takes PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH first, then the first candidate that exists', () => {
    assert.equal(findChromium({ PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH: second }, [first]), second)
    assert.equal(findChromium({}, [join(dir, 'missing'), second, first]), second)
  })

  it('without one, fails with a single line that says how to get one', () => {
    const error = catchError(() => findChromium({}, [join(dir, 'missing')]))
    assert.match(
      error.message,
      /apt-get install chromium.*npx playwright-core install chromium.*PLAYWRIGHT_CHROMIUM/,
    )
    assert.equal(error.stack, `Error: ${error.message}`, 'no stack trace')
    assert.doesNotMatch(error.message, /\n/)
  })

  it('names a PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH that does not exist instead of falling back', () => {
    const missing = join(dir, 'missing')
    const error = catchError(() => findChromium({ PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH: missing }, [first]))
    assert.match(
      error.message,
      new RegExp(`PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH is ${missing}, which does not exist`),
    )
  })
})

function catchError(run: () => unknown): Error {
  try {
    run()
  } catch (error) {
    if (error instanceof Error) return error
  }
  assert.fail('expected an error')
}
