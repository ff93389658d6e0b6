import { GuardError } from '../errors.ts'

export interface DecodedJws {
  header: Readonly<Record<string, unknown>>
  payload: Record<string, unknown>
  /** The ASCII bytes of `header.payload`, which the signature covers. */
  signingInput: Buffer
  signature: Buffer
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Each base64url character's 6-bit value, by character code. */
const BASE64URL_VALUES = new Uint8Array(128)
for (const [value, char] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].entries())
  BASE64URL_VALUES[char.charCodeAt(0)] = value
/** By length mod 4: the bits of the last character that carry no data and must be zero (RFC 4648 §3.5). */
const UNUSED_BITS = [0, 0, 0b1111, 0b11]

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
  const first = token.indexOf('.')
  const second = token.indexOf('.', first + 1)
  return {
    header: decodeHeader(token.slice(0, first)),
    payload: decodeJsonSegment(token.slice(first + 1, second), 'payload'),
    // One byte per character: the segments are ASCII, checked above.
    signingInput: Buffer.from(token.slice(0, second), 'latin1'),
    signature: decodeSegment(token.slice(second + 1), 'signature'),
  }
}

/** True when the string has the shape of a compact JWS (three segments); says nothing about validity. */
export function looksLikeJws(token: string): boolean {
  const first = token.indexOf('.')
  const second = first === -1 ? -1 : token.indexOf('.', first + 1)
  return second !== -1 && token.indexOf('.', second + 1) === -1
}

/** `segment` holds only base64url characters (the caller checked); this refuses non-canonical encodings. */
function decodeSegment(segment: string, part: string): Buffer {
  // Node's decoder ignores stray trailing bits, which would give one token several spellings.
  const rest = segment.length % 4
  const unused = UNUSED_BITS[rest] as number
  if (
    rest === 1 ||
    (unused !== 0 && (BASE64URL_VALUES[segment.charCodeAt(segment.length - 1)] as number) & unused)
  )
    throw new GuardError('token_malformed', `non-canonical base64url in ${part}`)
  return Buffer.from(segment, 'base64url')
}

/**
 * An issuer signs every token with the same few headers: each is decoded once. Frozen, since every token
 * with that header shares it; bounded, since headers arrive before any signature is checked.
 */
const headers = new Map<string, Readonly<Record<string, unknown>>>()
const MAX_HEADERS = 64

function decodeHeader(segment: string): Readonly<Record<string, unknown>> {
  let header = headers.get(segment)
  if (header === undefined) {
    header = Object.freeze(decodeJsonSegment(segment, 'header'))
    if (headers.size >= MAX_HEADERS) headers.clear()
    headers.set(segment, header)
  }
  return header
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
