import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { it } from 'node:test'
import { NODE } from '../support/gateway-harness.ts'

const SOAK = new URL('../../bench/soak.ts', import.meta.url).pathname

it('npm run soak: 60 s of mixed load end with no unexpected error and a heap that levelled off', {
  timeout: 180_000,
}, async (t) => {
  const soak = spawn(NODE, [SOAK, '--seconds', '60', '--clients', '4'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  soak.stdout.on('data', (chunk: Buffer) => {
    output += chunk
  })
  soak.stderr.on('data', (chunk: Buffer) => {
    output += chunk
  })
  const [code] = await once(soak, 'exit')
  t.diagnostic(output.trim().split('\n').slice(-3).join(' | '))
  assert.equal(code, 0, output)
  assert.match(output, /total: [1-9]\d* requests .*, 0 unexpected errors, 0 errors logged/)
  assert.match(output, /^PASS$/m)
})
