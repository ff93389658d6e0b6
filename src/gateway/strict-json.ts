/**
 * The one parser for client JSON-RPC bodies: strict JSON (RFC 8259, valid UTF-8) read in a single pass
 * that builds the value as `JSON.parse` would, and refuses what would let the gateway and the upstream
 * read different messages. The gateway authorizes on the value but forwards the raw bytes, so any key
 * an upstream decoder could resolve otherwise is refused:
 *
 * - a key twice in one object, at any depth: `JSON.parse` keeps the last, many decoders the first. No
 *   valid MCP message has one (I-JSON, RFC 7493, forbids them), and inside tool arguments the gateway
 *   would otherwise log or check one value while the tool runs the other.
 * - in a message object and its `params`, a key that is not a routing key but folds to one (`Method`,
 *   `Name`, `paramſ`, `ıd`): Go's encoding/json matches field names case-insensitively, ſ (U+017F) and
 *   K (U+212A) included (CVE-2026-27896). Tool arguments may spell keys as their schema likes: the
 *   gateway authorizes nothing inside them.
 * - nesting deeper than {@link MAX_JSON_DEPTH}: deep values make recursive code (`JSON.stringify`, an
 *   upstream's decoder) overflow its stack.
 */
import { isUtf8 } from 'node:buffer'

export const MAX_JSON_DEPTH = 64

/** The keys the gateway reads to route and authorize a message. */
export const ROUTING_KEYS: ReadonlySet<string> = new Set([
  'jsonrpc',
  'id',
  'method',
  'params',
  'name',
  'uri',
  'arguments',
])

export class JsonRefused extends Error {
  override name = 'JsonRefused'
  /** The JSON-RPC error code: parse error for malformed JSON, invalid request for the rest. */
  readonly code: number

  constructor(code: number, message: string) {
    super(message)
    this.code = code
  }
}

const PARSE_ERROR = -32_700
const INVALID_REQUEST = -32_600

/** What a value is to the JSON-RPC reader, which decides the checks on its keys. */
const TOP = 0
const MESSAGE = 1
const PARAMS = 2
const OTHER = 3
type Role = typeof TOP | typeof MESSAGE | typeof PARAMS | typeof OTHER

/** Parses a JSON-RPC body (one message or a batch); throws {@link JsonRefused} with the reason. */
export function parseStrictJsonRpc(body: Buffer): unknown {
  if (!isUtf8(body)) throw new JsonRefused(PARSE_ERROR, 'the body is not valid UTF-8')
  return new Parser(body.toString('utf8')).parseBody()
}

class Parser {
  readonly #text: string
  #position = 0
  /** The next backslash at or after the last string searched for one; the length when there is none. */
  #backslash = -1
  /** Likewise the next raw control character (whitespace between tokens included). */
  #control = -1

  constructor(text: string) {
    this.#text = text
  }

  parseBody(): unknown {
    const value = this.#value(0, TOP)
    this.#skipSpace()
    if (this.#position !== this.#text.length) this.#unexpected()
    return value
  }

  #value(depth: number, role: Role): unknown {
    this.#skipSpace()
    const text = this.#text
    const char = text.charCodeAt(this.#position)
    if (char === 0x7b) return this.#object(depth + 1, role === TOP ? MESSAGE : role)
    if (char === 0x5b) return this.#array(depth + 1, role === TOP ? MESSAGE : OTHER)
    if (char === 0x22) return this.#string()
    if (char === 0x2d || (char >= 0x30 && char <= 0x39)) return this.#number()
    if (char === 0x74 && text.startsWith('true', this.#position)) return this.#literal(4, true)
    if (char === 0x66 && text.startsWith('false', this.#position)) return this.#literal(5, false)
    if (char === 0x6e && text.startsWith('null', this.#position)) return this.#literal(4, null)
    return this.#unexpected()
  }

  #literal<T>(length: number, value: T): T {
    this.#position += length
    return value
  }

  #object(depth: number, role: Role): Record<string, unknown> {
    this.#enter(depth)
    const object: Record<string, unknown> = {}
    this.#position++
    this.#skipSpace()
    if (this.#text.charCodeAt(this.#position) === 0x7d) {
      this.#position++
      return object
    }
    for (;;) {
      if (this.#text.charCodeAt(this.#position) !== 0x22) this.#unexpected()
      const key = this.#string()
      if (Object.hasOwn(object, key)) {
        throw new JsonRefused(
          INVALID_REQUEST,
          `the key ${JSON.stringify(key)} appears twice in one object${where(role)}; send each key once`,
        )
      }
      if (role !== OTHER) refuseFoldedKey(key, role)
      this.#skipSpace()
      if (this.#text.charCodeAt(this.#position) !== 0x3a) this.#unexpected()
      this.#position++
      const value = this.#value(depth, role === MESSAGE && key === 'params' ? PARAMS : OTHER)
      // `JSON.parse` makes `__proto__` an own property; assigning it would set the prototype instead.
      if (key === '__proto__') Object.defineProperty(object, key, { value, enumerable: true, writable: true })
      else object[key] = value
      this.#skipSpace()
      const next = this.#text.charCodeAt(this.#position++)
      if (next === 0x7d) return object
      if (next !== 0x2c) this.#unexpected(this.#position - 1)
      this.#skipSpace()
    }
  }

  #array(depth: number, elementRole: Role): unknown[] {
    this.#enter(depth)
    const array: unknown[] = []
    this.#position++
    this.#skipSpace()
    if (this.#text.charCodeAt(this.#position) === 0x5d) {
      this.#position++
      return array
    }
    for (;;) {
      array.push(this.#value(depth, elementRole))
      this.#skipSpace()
      const next = this.#text.charCodeAt(this.#position++)
      if (next === 0x5d) return array
      if (next !== 0x2c) this.#unexpected(this.#position - 1)
    }
  }

  #enter(depth: number): void {
    if (depth > MAX_JSON_DEPTH) {
      throw new JsonRefused(
        INVALID_REQUEST,
        `the body nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`,
      )
    }
  }

  /**
   * A string at the opening quote. The next quote and the next backslash are found by native `indexOf`
   * and remembered until passed, so however many escapes a string holds, the text is searched once. Raw
   * control characters are refused anywhere in a string, escapes or not: the next one is found by a native
   * regular expression over the raw text and remembered the same way, with no copy of the string made.
   */
  #string(): string {
    const text = this.#text
    const start = this.#position + 1
    let run = start
    let out = ''
    let end = -1
    for (;;) {
      if (end < run) end = text.indexOf('"', run)
      if (end === -1) this.#unexpected(text.length)
      if (this.#backslash < run) {
        this.#backslash = text.indexOf('\\', run)
        if (this.#backslash === -1) this.#backslash = text.length
      }
      const backslash = this.#backslash
      out += text.slice(run, Math.min(backslash, end))
      if (end < backslash) {
        if (this.#control < start) {
          CONTROL.lastIndex = start
          this.#control = CONTROL.exec(text)?.index ?? text.length
        }
        if (this.#control < end) this.#unexpected(this.#control)
        this.#position = end + 1
        return out
      }
      const escaped = text[backslash + 1]
      const simple = escaped === undefined ? undefined : ESCAPES[escaped]
      if (simple !== undefined) {
        out += simple
        run = backslash + 2
      } else if (escaped === 'u') {
        out += String.fromCharCode(this.#hex4(backslash + 2))
        run = backslash + 6
      } else this.#unexpected(backslash + 1)
    }
  }

  #hex4(at: number): number {
    let code = 0
    for (let i = at; i < at + 4; i++) {
      const digit = HEX.indexOf(this.#text[i] ?? 'x')
      if (digit === -1) this.#unexpected(i)
      code = code * 16 + (digit & 15)
    }
    return code
  }

  #number(): number {
    const text = this.#text
    const start = this.#position
    let at = start
    if (text.charCodeAt(at) === 0x2d) at++
    if (text.charCodeAt(at) === 0x30) at++
    else if (isDigit(text.charCodeAt(at))) at = digits(text, at)
    else this.#unexpected(at)
    if (text.charCodeAt(at) === 0x2e) {
      if (!isDigit(text.charCodeAt(at + 1))) this.#unexpected(at + 1)
      at = digits(text, at + 1)
    }
    const exponent = text.charCodeAt(at)
    if (exponent === 0x65 || exponent === 0x45) {
      at++
      const sign = text.charCodeAt(at)
      if (sign === 0x2b || sign === 0x2d) at++
      if (!isDigit(text.charCodeAt(at))) this.#unexpected(at)
      at = digits(text, at)
    }
    this.#position = at
    return Number(text.slice(start, at))
  }

  #skipSpace(): void {
    const text = this.#text
    let char = text.charCodeAt(this.#position)
    while (char === 0x20 || char === 0x0a || char === 0x0d || char === 0x09)
      char = text.charCodeAt(++this.#position)
  }

  #unexpected(at = this.#position): never {
    const what =
      at >= this.#text.length ? 'it ends unfinished' : `unexpected ${JSON.stringify(this.#text[at])}`
    throw new JsonRefused(PARSE_ERROR, `the body is not valid JSON: ${what} at character ${at}`)
  }
}

const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
}

/** Hex digits, lower case then upper case: a digit's value is its first index modulo 16. */
const HEX = '0123456789abcdef0123456789ABCDEF'

// biome-ignore lint/suspicious/noControlCharactersInRegex: JSON strings may not hold raw control characters.
const CONTROL = /[\u0000-\u001f]/g

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39

function digits(text: string, from: number): number {
  let at = from
  while (isDigit(text.charCodeAt(at))) at++
  return at
}

const where = (role: Role): string =>
  role === MESSAGE ? ' of the message' : role === PARAMS ? ' in params' : ''

/**
 * The non-ASCII letters some decoder folds to an ASCII one: Go's encoding/json compares
 * `ToUpper(ToLower(r))`, so İ (U+0130) and ı (U+0131) read as i, ſ (U+017F) as s and K (U+212A) as k;
 * Java's `equalsIgnoreCase` agrees. No other code point folds to ASCII under simple case mapping.
 */
const FOLDS_TO_ASCII: ReadonlyMap<number, string> = new Map([
  [0x130, 'i'],
  [0x131, 'i'],
  [0x17f, 's'],
  [0x212a, 'k'],
])

const LONGEST_ROUTING_KEY = Math.max(...[...ROUTING_KEYS].map((k) => k.length))

function refuseFoldedKey(key: string, role: Role): void {
  if (key.length > LONGEST_ROUTING_KEY || ROUTING_KEYS.has(key)) return
  const folded = foldToAscii(key)
  if (folded === undefined || !ROUTING_KEYS.has(folded)) return
  throw new JsonRefused(
    INVALID_REQUEST,
    `the key ${JSON.stringify(key)}${where(role)} reads as ${JSON.stringify(folded)} to a case-insensitive ` +
      `decoder; spell routing keys exactly (${[...ROUTING_KEYS].join(', ')})`,
  )
}

/** The key in ASCII lower case, or `undefined` when some character cannot fold to ASCII. */
function foldToAscii(key: string): string | undefined {
  let out = ''
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i)
    if (code < 0x80) out += code >= 0x41 && code <= 0x5a ? String.fromCharCode(code + 0x20) : key[i]
    else {
      const folded = FOLDS_TO_ASCII.get(code)
      if (folded === undefined) return undefined
      out += folded
    }
  }
  return out
}
