/**
 * Colours only for a person at a terminal: on a pseudo-terminal the doctor's verdicts are coloured, piped
 * they are not, NO_COLOR turns them off and FORCE_COLOR on, and --json is never coloured, forced or not.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { describe, it } from 'node:test'
import { colourEnabled, painter } from '../../src/cli/style.ts'
import { gatehouse, MAIN } from '../support/embedded-gateway.ts'

const ESC = '\u001b['
/** Nothing listens on port 1: every check fails at once, and the failures are what gets coloured. */
const DOCTOR = ['doctor', '--issuer', 'http://127.0.0.1:1']

const SCRIPT = ['/usr/bin/script', '/bin/script'].find((path) => existsSync(path))

/** The doctor on a pseudo-terminal (util-linux script(1)), with `env` besides PATH: what a person sees. */
async function onTerminal(env: Record<string, string>): Promise<string> {
  const command = [process.execPath, MAIN, ...DOCTOR].join(' ')
  const child = spawn(SCRIPT as string, ['-qec', command, '/dev/null'], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let screen = ''
  child.stdout.on('data', (chunk: Buffer) => {
    screen += chunk
  })
  await once(child, 'exit')
  assert.match(screen, /FAIL/, 'the doctor ran')
  return screen
}

describe('colours only on a terminal', () => {
  it('decides from FORCE_COLOR, then NO_COLOR and TERM=dumb, then whether the stream is a terminal', () => {
    const tty = { isTTY: true }
    const pipe = { isTTY: false }
    assert.equal(colourEnabled(tty, {}), true)
    assert.equal(colourEnabled(pipe, {}), false)
    assert.equal(colourEnabled(tty, { NO_COLOR: '1' }), false)
    assert.equal(colourEnabled(tty, { NO_COLOR: '' }), true, 'an empty NO_COLOR does not count')
    assert.equal(colourEnabled(tty, { TERM: 'dumb' }), false)
    assert.equal(colourEnabled(pipe, { FORCE_COLOR: '1' }), true)
    assert.equal(colourEnabled(pipe, { FORCE_COLOR: '' }), true)
    assert.equal(colourEnabled(tty, { FORCE_COLOR: '0' }), false)
    assert.equal(colourEnabled(tty, { FORCE_COLOR: 'false' }), false)
    assert.equal(colourEnabled(pipe, { FORCE_COLOR: '1', NO_COLOR: '1' }), true, 'the explicit force wins')
    assert.equal(painter(pipe, {})('fail', 'FAIL'), 'FAIL')
    assert.equal(painter(tty, {})('fail', 'FAIL'), `${ESC}31mFAIL${ESC}39m`)
  })

  it('piped: no colour; FORCE_COLOR: colour; --json: never', async () => {
    const piped = await gatehouse(DOCTOR)
    assert.equal(piped.code, 1)
    assert.match(piped.stdout, /^FAIL {2}discovery/m)
    assert.ok(!piped.stdout.includes(ESC) && !piped.stderr.includes(ESC), piped.stdout)

    const forced = await gatehouse(DOCTOR, '', { FORCE_COLOR: '1' })
    assert.ok(forced.stdout.includes(`${ESC}31mFAIL${ESC}39m`), forced.stdout)

    const json = await gatehouse([...DOCTOR, '--json'], '', { FORCE_COLOR: '1' })
    assert.equal(json.code, 1)
    assert.ok(!json.stdout.includes(ESC), json.stdout)
    assert.equal(JSON.parse(json.stdout).ok, false)
  })

  it('on a terminal: colour, unless NO_COLOR is set', {
    skip: !SCRIPT && 'script(1) is not installed',
  }, async () => {
    assert.ok((await onTerminal({})).includes(`${ESC}31mFAIL`))
    assert.ok(!(await onTerminal({ NO_COLOR: '1' })).includes(ESC))
  })
})
