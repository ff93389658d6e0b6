import { GuardError } from '../errors.ts'

export interface DecodedJws {
  header: Readonly<Record<string, unknown>>
  payload: Record<string, unknown>
  /** The ASCII bytes of `header.payload`, which the signature covers. */
  signingInput: Buffer
  signature: Buffer
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Only decodes: no signature, key or claim has been checked when this returns. Rejects, before any crypto,
 * everything that is not a canonical three-segment compact JWS with JSON-object header and payload:
 * whitespace, padding, `+` and `/`, non-canonical trailing bits, JWE, invalid UTF-8.
 */
export function decodeCompactJws(token: string, maxBytes: number): DecodedJws {
  if (token.length > maxBytes)
    throw new GuardError('token_too_large', `${token.length} bytes, limit ${maxBytes}`)
  const first = token.indexOf('.')
  const second = first === -1 ? -1 : token.indexOf('.', first + 1)
  if (second === -1 || token.indexOf('.', second + 1) !== -1) {
    const segments = token.split('.').length
    throw new GuardError(
      'token_malformed',
      segments === 5 ? 'encrypted JWTs (JWE) are not accepted' : 'not three base64url segments',
    )
  }
  return {
    header: decodeHeader(token.slice(0, first)),
    payload: decodeJsonSegment(token.slice(first + 1, second), 'payload'),
    // One byte per character: the header and payload segments are canonical base64url, checked above.
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

/**
 * Refuses all but the one canonical spelling of each byte string: encoding the bytes again must give the
 * segment back. Node's decoder is lenient (it skips characters outside the alphabet, takes `+`, `/` and `=`,
 * ignores stray trailing bits); the encoder writes only unpadded base64url with zero trailing bits. That one
 * comparison replaces a regex over the whole token and a trailing-bits check.
 */
function decodeSegment(segment: string, part: string): Buffer {
  const bytes = Buffer.from(segment, 'base64url')
  if (segment === '' || bytes.toString('base64url') !== segment)
    throw new GuardError('token_malformed', `${part} is not canonical base64url`)
  return bytes
}

/**
 * An issuer signs every token with the same few headers: each is decoded once. Frozen, since every token
 * with that header shares it; bounded, since headers arrive before any signature is checked.
 */
const headers = new Map<string, Readonly<Record<string, unknown>>>()
const MAX_HEADERS = 64
/** The header found last: most tokens repeat it, and comparing strings costs less than hashing one. */
let last: { segment: string; header: Readonly<Record<string, unknown>> } | undefined

function decodeHeader(segment: string): Readonly<Record<string, unknown>> {
  if (segment === last?.segment) return last.header
  let header = headers.get(segment)
  if (header === undefined) {
    header = Object.freeze(decodeJsonSegment(segment, 'header'))
    if (headers.size >= MAX_HEADERS) headers.clear()
    headers.set(segment, header)
  }
  last = { segment, header }
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
