import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { GuardError } from '../../src/guard/errors.ts'
import { decodeCompactJws } from '../../src/guard/lib/compact.ts'
import { encodeSegment, withTrailingBits } from '../support/forge.ts'

/**
 * The decoded-header cache: a header segment is decoded once and shared while cached (the same frozen
 * object comes back), and only for exactly that segment. The signature is not checked here (see
 * jwt-hostile.test.ts for a cached header under a wrong signature).
 */
const SIGNATURE = encodeSegment(Buffer.alloc(64, 7))
const decode = (header: string, payload: unknown = { sub: 'a' }) =>
  decodeCompactJws(`${header}.${encodeSegment(payload)}.${SIGNATURE}`, 8192)
const headerSegment = (kid: string) => encodeSegment({ alg: 'ES256', typ: 'at+jwt', kid })

describe('decoded-header cache', () => {
  it('gives back the same frozen header for the same segment, from the last slot and from the map', () => {
    const first = decode(headerSegment('shared-1')).header
    assert.equal(decode(headerSegment('shared-1'), { sub: 'b' }).header, first)
    decode(headerSegment('shared-2'))
    assert.equal(decode(headerSegment('shared-1')).header, first)
    assert.ok(Object.isFrozen(first))
  })

  it('decodes a segment that differs in one character on its own', () => {
    const a = headerSegment('kid-a')
    const b = headerSegment('kid-b')
    assert.equal(a.length, b.length)
    assert.equal(decode(a).header.kid, 'kid-a')
    assert.equal(decode(b).header.kid, 'kid-b')
    assert.equal(decode(a).header.kid, 'kid-a')
  })

  it('does not take a longer or shorter segment for a cached one', () => {
    const cached = headerSegment('prefix')
    decode(cached)
    for (const other of [`${cached}A`, cached.slice(0, -1)]) {
      assert.throws(() => decode(other), GuardError)
    }
  })

  it('refuses another spelling of a cached header (same bytes, non-canonical trailing bits)', () => {
    const cached = encodeSegment({ alg: 'ES256', typ: 'at+jwt', kid: 'bits' })
    assert.notEqual(cached.length % 4, 0)
    decode(cached)
    assert.throws(() => decode(withTrailingBits(cached)), { code: 'token_malformed' })
  })

  it('is bounded: after a hundred other headers, the first is decoded anew', () => {
    const segment = headerSegment('evicted')
    const first = decode(segment).header
    for (let i = 0; i < 100; i++) decode(headerSegment(`filler-${i}`))
    const again = decode(segment).header
    assert.notEqual(again, first)
    assert.deepEqual(again, first)
  })
})
