import { createHmac, type KeyObject, sign } from 'node:crypto'

/** base64url of JSON (objects, arrays, strings...) or of raw bytes given as a Buffer. */
export const encodeSegment = (value: unknown): string =>
  (Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value))).toString('base64url')

/**
 * Signs any header and payload with a key, whatever the header says: jose refuses odd headers (`crit`,
 * `b64`, non-string `kid`) before signing, and hostile tests need exactly those. The signature follows the
 * key's own type (ES256 for P-256, RS256 for RSA, Ed25519), so a header may lie about the algorithm.
 */
export function signJws(header: Record<string, unknown>, payload: unknown, key: KeyObject): string {
  const input = `${encodeSegment(header)}.${encodeSegment(payload)}`
  const data = Buffer.from(input)
  const signature =
    key.asymmetricKeyType === 'ec'
      ? sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' })
      : sign(key.asymmetricKeyType === 'rsa' ? 'sha256' : null, data, key)
  return `${input}.${signature.toString('base64url')}`
}

/** An HS* token keyed with `secret`: the HMAC-with-the-public-key confusion attack. */
export function signHmac(alg: 'HS256' | 'HS384' | 'HS512', payload: unknown, secret: Buffer): string {
  const input = `${encodeSegment({ alg, typ: 'at+jwt' })}.${encodeSegment(payload)}`
  const mac = createHmac(`sha${alg.slice(2)}`, secret)
    .update(input)
    .digest('base64url')
  return `${input}.${mac}`
}

/** Flips the lowest unused bit of a base64url segment: the same bytes, a non-canonical spelling. */
export function withTrailingBits(segment: string): string {
  if (segment.length % 4 === 0) throw new Error('this segment has no unused trailing bits')
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const last = alphabet.indexOf(segment.at(-1) as string)
  return segment.slice(0, -1) + alphabet[last ^ 1]
}
