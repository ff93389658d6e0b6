import assert from 'node:assert/strict'
import { createPublicKey, generateKeyPairSync, sign } from 'node:crypto'
import { describe, it } from 'node:test'
import { derFromP1363, type JwsAlgorithm, verifySignature } from '../../src/guard/lib/algorithms.ts'

/**
 * ECDSA signatures reach node:crypto as DER built by the guard (see verifySignature). The DER INTEGERs are
 * where an encoder goes wrong: a value whose top bit is set needs a zero byte in front, one with leading zero
 * bytes must lose them, and P-521's sequence is too long for a one-byte length.
 */
const CURVES: [JwsAlgorithm, string, string][] = [
  ['ES256', 'P-256', 'sha256'],
  ['ES384', 'P-384', 'sha384'],
  ['ES512', 'P-521', 'sha512'],
]

type Shape = 'r leading zero' | 'r top bit' | 's leading zero' | 's top bit'

function shapesOf(signature: Buffer): Shape[] {
  const half = signature.length / 2
  const shapes: Shape[] = []
  if (signature[0] === 0) shapes.push('r leading zero')
  if ((signature[0] as number) >= 0x80) shapes.push('r top bit')
  if (signature[half] === 0) shapes.push('s leading zero')
  if ((signature[half] as number) >= 0x80) shapes.push('s top bit')
  return shapes
}

describe('ECDSA signatures in their DER form', () => {
  for (const [alg, namedCurve, hash] of CURVES) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve })
    const key = createPublicKey(privateKey)
    // P-521's 66-byte halves carry 521 bits: their first byte is 0 or 1, never with the top bit set.
    const wanted: Shape[] =
      alg === 'ES512'
        ? ['r leading zero', 's leading zero']
        : ['r leading zero', 'r top bit', 's leading zero', 's top bit']

    it(`${alg}: genuine signatures verify whatever the shape of r and s; one flipped bit does not`, () => {
      const seen = new Set<Shape>()
      for (let i = 0; i < 20_000 && seen.size < wanted.length; i++) {
        const data = Buffer.from(`message ${i}`)
        const signature = sign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' })
        const shapes = shapesOf(signature)
        if (i >= 8 && !shapes.some((shape) => !seen.has(shape))) continue
        for (const shape of shapes) seen.add(shape)
        assert.equal(verifySignature(alg, key, data, signature), true, `${shapes.join(', ')}`)
        const flipped = Buffer.from(signature)
        flipped[flipped.length - 1] = (flipped.at(-1) as number) ^ 1
        assert.equal(verifySignature(alg, key, data, flipped), false)
      }
      assert.deepEqual([...seen].sort(), [...wanted].sort())
    })
  }

  it('encodes r and s as minimal INTEGERs in one SEQUENCE', () => {
    const p1363 = Buffer.alloc(64)
    p1363[31] = 0x7f // r = 0x7f: one byte, leading zeros dropped
    p1363[32] = 0x80 // s has its top bit set: a zero byte goes in front
    const der = derFromP1363(p1363)
    const expected = Buffer.concat([
      Buffer.from([0x30, 4 + 1 + 33, 0x02, 1, 0x7f, 0x02, 33, 0x00]),
      p1363.subarray(32),
    ])
    assert.deepEqual(der, expected)
  })

  it('keeps one zero byte for a zero r or s (which then fails to verify, as it must)', () => {
    const der = derFromP1363(Buffer.alloc(64))
    assert.deepEqual(der, Buffer.from([0x30, 6, 0x02, 1, 0x00, 0x02, 1, 0x00]))
  })

  it('uses the long form of the SEQUENCE length for P-521', () => {
    const p1363 = Buffer.alloc(132, 0x01)
    const der = derFromP1363(p1363)
    assert.deepEqual(der.subarray(0, 5), Buffer.from([0x30, 0x81, 4 + 66 + 66, 0x02, 66]))
    assert.equal(der.length, 3 + 4 + 66 + 66)
  })
})
