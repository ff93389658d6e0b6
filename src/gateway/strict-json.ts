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
  readonly #s: string
  #i = 0
  /** The next backslash at or after the last string searched for one; the length when there is none. */
  #backslash = -1

  constructor(text: string) {
    this.#s = text
  }

  parseBody(): unknown {
    const value = this.#value(0, TOP)
    this.#skipSpace()
    if (this.#i !== this.#s.length) this.#unexpected()
    return value
  }

  #value(depth: number, role: Role): unknown {
    this.#skipSpace()
    const s = this.#s
    const c = s.charCodeAt(this.#i)
    if (c === 0x7b) return this.#object(depth + 1, role === TOP ? MESSAGE : role)
    if (c === 0x5b) return this.#array(depth + 1, role === TOP ? MESSAGE : OTHER)
    if (c === 0x22) return this.#string()
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.#number()
    if (c === 0x74 && s.startsWith('true', this.#i)) return this.#literal(4, true)
    if (c === 0x66 && s.startsWith('false', this.#i)) return this.#literal(5, false)
    if (c === 0x6e && s.startsWith('null', this.#i)) return this.#literal(4, null)
    return this.#unexpected()
  }

  #literal<T>(length: number, value: T): T {
    this.#i += length
    return value
  }

  #object(depth: number, role: Role): Record<string, unknown> {
    this.#enter(depth)
    const object: Record<string, unknown> = {}
    this.#i++
    this.#skipSpace()
    if (this.#s.charCodeAt(this.#i) === 0x7d) {
      this.#i++
      return object
    }
    for (;;) {
      if (this.#s.charCodeAt(this.#i) !== 0x22) this.#unexpected()
      const key = this.#string()
      if (Object.hasOwn(object, key)) {
        throw new JsonRefused(
          INVALID_REQUEST,
          `the key ${JSON.stringify(key)} appears twice in one object${where(role)}; send each key once`,
        )
      }
      if (role !== OTHER) refuseFoldedKey(key, role)
      this.#skipSpace()
      if (this.#s.charCodeAt(this.#i) !== 0x3a) this.#unexpected()
      this.#i++
      const value = this.#value(depth, role === MESSAGE && key === 'params' ? PARAMS : OTHER)
      // `JSON.parse` makes `__proto__` an own property; assigning it would set the prototype instead.
      if (key === '__proto__') Object.defineProperty(object, key, { value, enumerable: true, writable: true })
      else object[key] = value
      this.#skipSpace()
      const next = this.#s.charCodeAt(this.#i++)
      if (next === 0x7d) return object
      if (next !== 0x2c) this.#unexpected(this.#i - 1)
      this.#skipSpace()
    }
  }

  #array(depth: number, elementRole: Role): unknown[] {
    this.#enter(depth)
    const array: unknown[] = []
    this.#i++
    this.#skipSpace()
    if (this.#s.charCodeAt(this.#i) === 0x5d) {
      this.#i++
      return array
    }
    for (;;) {
      array.push(this.#value(depth, elementRole))
      this.#skipSpace()
      const next = this.#s.charCodeAt(this.#i++)
      if (next === 0x5d) return array
      if (next !== 0x2c) this.#unexpected(this.#i - 1)
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
   * control characters are refused anywhere in a string, escapes or not, so one native regular expression
   * over the raw text checks for them.
   */
  #string(): string {
    const s = this.#s
    const start = this.#i + 1
    let run = start
    let out = ''
    let end = -1
    for (;;) {
      if (end < run) end = s.indexOf('"', run)
      if (end === -1) this.#unexpected(s.length)
      if (this.#backslash < run) {
        this.#backslash = s.indexOf('\\', run)
        if (this.#backslash === -1) this.#backslash = s.length
      }
      const backslash = this.#backslash
      out += s.slice(run, Math.min(backslash, end))
      if (end < backslash) {
        const control = CONTROL.exec(s.slice(start, end))
        if (control !== null) this.#unexpected(start + control.index)
        this.#i = end + 1
        return out
      }
      const e = s[backslash + 1]
      const simple = e === undefined ? undefined : ESCAPES[e]
      if (simple !== undefined) {
        out += simple
        run = backslash + 2
      } else if (e === 'u') {
        out += String.fromCharCode(this.#hex4(backslash + 2))
        run = backslash + 6
      } else this.#unexpected(backslash + 1)
    }
  }

  #hex4(at: number): number {
    let code = 0
    for (let i = at; i < at + 4; i++) {
      const digit = HEX.indexOf(this.#s[i] ?? 'x')
      if (digit === -1) this.#unexpected(i)
      code = code * 16 + (digit & 15)
    }
    return code
  }

  #number(): number {
    const s = this.#s
    const start = this.#i
    let i = start
    if (s.charCodeAt(i) === 0x2d) i++
    if (s.charCodeAt(i) === 0x30) i++
    else if (isDigit(s.charCodeAt(i))) i = digits(s, i)
    else this.#unexpected(i)
    if (s.charCodeAt(i) === 0x2e) {
      if (!isDigit(s.charCodeAt(i + 1))) this.#unexpected(i + 1)
      i = digits(s, i + 1)
    }
    const e = s.charCodeAt(i)
    if (e === 0x65 || e === 0x45) {
      i++
      const sign = s.charCodeAt(i)
      if (sign === 0x2b || sign === 0x2d) i++
      if (!isDigit(s.charCodeAt(i))) this.#unexpected(i)
      i = digits(s, i)
    }
    this.#i = i
    return Number(s.slice(start, i))
  }

  #skipSpace(): void {
    const s = this.#s
    let c = s.charCodeAt(this.#i)
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = s.charCodeAt(++this.#i)
  }

  #unexpected(at = this.#i): never {
    const what = at >= this.#s.length ? 'it ends unfinished' : `unexpected ${JSON.stringify(this.#s[at])}`
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
const CONTROL = /[\u0000-\u001f]/

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39

function digits(s: string, from: number): number {
  let i = from
  while (isDigit(s.charCodeAt(i))) i++
  return i
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
    const c = key.charCodeAt(i)
    if (c < 0x80) out += c >= 0x41 && c <= 0x5a ? String.fromCharCode(c + 0x20) : key[i]
    else {
      const folded = FOLDS_TO_ASCII.get(c)
      if (folded === undefined) return undefined
      out += folded
    }
  }
  return out
}
