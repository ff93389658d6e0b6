import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { JsonRefused, MAX_JSON_DEPTH, parseStrictJsonRpc } from '../../src/gateway/strict-json.ts'

const SEED = 7

/** What the strict parser makes of `text`: the value, or the refusal's code. */
function strict(text: string): { value: unknown } | { code: number } {
  try {
    return { value: parseStrictJsonRpc(Buffer.from(text)) }
  } catch (error) {
    if (!(error instanceof JsonRefused)) throw error
    return { code: error.code }
  }
}

function native(text: string): { value: unknown } | { code: number } {
  try {
    return { value: JSON.parse(Buffer.from(text).toString()) }
  } catch {
    return { code: -32_700 }
  }
}

/**
 * Agrees with `JSON.parse`: the same value, or a parse error for what it cannot read; never throws
 * anything else. An invalid-request refusal (depth, duplicate or folded keys) may come before the end of
 * a malformed body is reached, so it stands for either.
 */
function assertAgrees(text: string): void {
  const ours = strict(text)
  const theirs = native(text)
  if ('value' in ours || ours.code === -32_700) assert.deepStrictEqual(ours, theirs, text)
  else assert.equal(ours.code, -32_600, text)
}

/** Random edits of valid JSON, where a hand-written parser goes wrong. */
const mutated = fc
  .tuple(
    fc.json({ depthSize: 'small' }),
    fc.array(fc.tuple(fc.nat(), fc.constantFrom(...'{}[],:"\\ -+.eE0u\u0000\t'), fc.boolean()), {
      maxLength: 3,
    }),
  )
  .map(([text, edits]) => {
    let out = text
    for (const [at, char, insert] of edits) {
      const i = at % (out.length + 1)
      out = out.slice(0, i) + char + out.slice(insert ? i : i + 1)
    }
    return out
  })

describe('gateway: the strict JSON-RPC body parser', () => {
  it('reads what JSON.parse reads, value for value', () => {
    fc.assert(fc.property(fc.json({ depthSize: 'medium' }), assertAgrees), { seed: SEED, numRuns: 1000 })
    fc.assert(
      fc.property(
        fc.jsonValue().map((v) => JSON.stringify(v, null, 1) ?? 'null'),
        assertAgrees,
      ),
      {
        seed: SEED,
        numRuns: 500,
      },
    )
  })

  it('refuses what JSON.parse refuses, with a parse error', () => {
    fc.assert(fc.property(mutated, assertAgrees), { seed: SEED, numRuns: 3000 })
    for (const text of [
      '',
      ' ',
      '01',
      '1.',
      '.5',
      '1e',
      '-',
      '+1',
      '"\\x"',
      '"\\u12"',
      '"a\nb"',
      '"\u0000\\n"',
      'tru',
      'nul',
      '[1,]',
      '{"a":1,}',
      '{"a" 1}',
      '\ufeff{}',
      '{}{}',
      'NaN',
      '1 2',
    ])
      assert.deepEqual(strict(text), { code: -32_700 }, text)
  })

  it('refuses bytes that are not UTF-8, which JSON.parse would read as U+FFFD', () => {
    for (const bytes of [
      [0x22, 0xff, 0x22],
      [0x22, 0xc0, 0xaf, 0x22],
      [0x22, 0xed, 0xa0, 0x80, 0x22],
    ]) {
      assert.throws(() => parseStrictJsonRpc(Buffer.from(bytes)), {
        name: 'JsonRefused',
        message: 'the body is not valid UTF-8',
      })
    }
  })

  it(`refuses nesting deeper than ${MAX_JSON_DEPTH}, counting objects and arrays alike`, () => {
    // `levels - 1` objects around an array.
    const nested = (levels: number) => `${'{"a":'.repeat(levels - 1)}[]${'}'.repeat(levels - 1)}`
    assert.ok('value' in strict(`${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`))
    assert.deepEqual(strict(`${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`), {
      code: -32_600,
    })
    assert.ok('value' in strict(nested(MAX_JSON_DEPTH)))
    assert.deepEqual(strict(nested(MAX_JSON_DEPTH + 1)), { code: -32_600 })
  })

  it('stays linear in the body: many strings, long strings of escapes, one backslash at the very end', () => {
    const bodies = [
      `[${'"a",'.repeat(200_000)}"\\n"]`,
      `"${'\\n'.repeat(500_000)}"`,
      `[${'"\\"",'.repeat(100_000)}0]`,
    ]
    for (const text of bodies) {
      const started = performance.now()
      assert.ok('value' in strict(text))
      // A quadratic search would take minutes on these.
      assert.ok(
        performance.now() - started < 2000,
        `${text.slice(0, 20)}… took ${performance.now() - started} ms`,
      )
    }
  })

  it('refuses duplicate keys at any depth, and keeps __proto__ an own property as JSON.parse does', () => {
    assert.deepEqual(strict('{"a":{"b":[{"c":1,"c":1}]}}'), { code: -32_600 })
    const value = (strict('{"__proto__":{"x":1}}') as { value: object }).value
    assert.equal(Object.getPrototypeOf(value), Object.prototype)
    assert.deepEqual(Object.keys(value), ['__proto__'])
  })

  it('refuses in messages and params every key Go would fold to a routing key, and nothing else', () => {
    const refused = ['ID', 'Id', 'ıd', 'İd', 'METHOD', 'Params', 'paramſ', 'JSONRPC', 'jſonrpc']
    for (const key of refused) {
      assert.deepEqual(strict(`{"${key}":1}`), { code: -32_600 }, key)
      assert.deepEqual(strict(`[{"jsonrpc":"2.0"},{"${key}":1}]`), { code: -32_600 }, key)
    }
    for (const key of ['Name', 'NAME', 'URI', 'Arguments', 'argumentſ']) {
      assert.deepEqual(strict(`{"params":{"${key}":1}}`), { code: -32_600 }, key)
    }
    // Exact keys, other keys, and anything below params are the message's own business.
    for (const text of [
      '{"jsonrpc":"2.0","id":1,"method":"m","params":{"name":"n","uri":"u","arguments":{"Name":1,"ID":2}}}',
      '{"params":{"_meta":{"Name":1}},"Result":1,"idx":2,"ids":3}',
      '{"id\u212a":1,"ſ":2}',
    ])
      assert.ok('value' in strict(text), text)
  })
})
