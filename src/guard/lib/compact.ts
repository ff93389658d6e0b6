import { GuardError } from '../errors.ts'

export interface DecodedJws {
  header: Record<string, unknown>
  payload: Record<string, unknown>
  /** The ASCII bytes of `header.payload`, which the signature covers. */
  signingInput: Buffer
  signature: Buffer
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Only decodes: no signature, key or claim has been checked when this returns. Rejects, before any crypto,
 * everything that is not a canonical three-segment compact JWS with JSON-object header and payload:
 * whitespace, padding, `+` and `/`, non-canonical trailing bits, JWE, invalid UTF-8.
 */
export function decodeCompactJws(token: string, maxBytes: number): DecodedJws {
  if (token.length > maxBytes)
    throw new GuardError('token_too_large', `${token.length} bytes, limit ${maxBytes}`)
  if (!COMPACT_JWS.test(token)) {
    const segments = token.split('.').length
    throw new GuardError(
      'token_malformed',
      segments === 5 ? 'encrypted JWTs (JWE) are not accepted' : 'not three base64url segments',
    )
  }
  const [h = '', p = '', s = ''] = token.split('.')
  const header = decodeJsonSegment(h, 'header')
  const payload = decodeJsonSegment(p, 'payload')
  return {
    header,
    payload,
    signingInput: Buffer.from(`${h}.${p}`, 'ascii'),
    signature: decodeSegment(s, 'signature'),
  }
}

/** True when the string has the shape of a compact JWS; says nothing about validity. */
export const looksLikeJws = (token: string): boolean => token.split('.').length === 3

function decodeSegment(segment: string, part: string): Buffer {
  const bytes = Buffer.from(segment, 'base64url')
  // Node's decoder ignores stray trailing bits; a canonical segment re-encodes to itself.
  if (bytes.toString('base64url') !== segment)
    throw new GuardError('token_malformed', `non-canonical base64url in ${part}`)
  return bytes
}

function decodeJsonSegment(segment: string, part: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(utf8.decode(decodeSegment(segment, part)))
  } catch (cause) {
    if (cause instanceof GuardError) throw cause
    throw new GuardError('token_malformed', `${part} is not UTF-8 JSON`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GuardError('token_malformed', `${part} is not a JSON object`)
  }
  return value as Record<string, unknown>
}
