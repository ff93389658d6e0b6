/**
 * Messages as their sender wrote them, both ways through the bridge. What the bridge relays unchanged
 * arrives byte for byte (big integers, `1.0`, escapes and spacing included); what it must change (the ids
 * and progress tokens it numbers itself, a filtered `tools/list`, the 2026-07-28 result fields, the trace
 * context) gets the sender's bytes with only that value replaced or those members added. A message the
 * bridge built itself is serialized.
 */
import type { JsonRpcMessage } from '../jsonrpc.ts'

const RAW = new WeakMap<JsonRpcMessage, string>()

const LINE_ENDS = /[\r\n]/g

/**
 * Keeps `text` (valid JSON that parses to `message`) as the message's bytes. CR and LF can only be
 * whitespace between tokens in JSON (inside a string they must be escaped), so dropping them changes no
 * value; and neither a line to the child nor an SSE `data:` line may hold one.
 */
export function keepRaw(message: JsonRpcMessage, text: string): void {
  RAW.set(message, text.replace(LINE_ENDS, ''))
}

/**
 * Keeps a client's POST body as the bytes of its messages (`messages` parsed from it, in order): the whole
 * body for one, each element's text for a batch.
 */
export function keepBodyRaw(messages: readonly JsonRpcMessage[], body: Buffer, batch: boolean): void {
  const text = body.toString('utf8')
  if (!batch) {
    if (messages[0] !== undefined) keepRaw(messages[0], text)
    return
  }
  let i = skipSpace(text, skipSpace(text, 0) + 1)
  for (const message of messages) {
    const end = skipValue(text, i)
    keepRaw(message, text.slice(i, end))
    i = skipSpace(text, skipSpace(text, end) + 1)
  }
}

/** The bytes to send for `message`: the child's, or its serialization. */
export const textOf = (message: JsonRpcMessage): string => RAW.get(message) ?? JSON.stringify(message)

/** The bytes of the value at `path` in `message` as its sender wrote it (a big integer id keeps its digits). */
export function rawValue(message: JsonRpcMessage, path: readonly string[]): string | undefined {
  const text = RAW.get(message)
  const span = text === undefined ? undefined : valueSpan(text, path)
  return span === undefined ? undefined : text?.slice(...span)
}

/**
 * `next` (a copy of `message` with the value at `path` set to `value`) gets `message`'s bytes with only that
 * value replaced, by `valueText` when given (the value's own bytes); without them (or without the member)
 * it stays to be serialized.
 */
export function replaceValue(
  message: JsonRpcMessage,
  next: JsonRpcMessage,
  path: readonly string[],
  value: unknown,
  valueText = JSON.stringify(value),
): JsonRpcMessage {
  const text = RAW.get(message)
  const span = text === undefined ? undefined : valueSpan(text, path)
  if (text !== undefined && span !== undefined)
    RAW.set(next, text.slice(0, span[0]) + valueText + text.slice(span[1]))
  return next
}

/**
 * `next` (a copy of `message` whose object at `path` has `members` added) gets `message`'s bytes with those
 * members written first into that object.
 */
export function addMembers(
  message: JsonRpcMessage,
  next: JsonRpcMessage,
  path: readonly string[],
  members: Record<string, unknown>,
): JsonRpcMessage {
  const text = RAW.get(message)
  const span = text === undefined ? undefined : valueSpan(text, path)
  if (text === undefined || span === undefined || text[span[0]] !== '{') return next
  const inner = JSON.stringify(members).slice(1, -1)
  const empty = text[skipSpace(text, span[0] + 1)] === '}'
  const open = span[0] + 1
  RAW.set(next, `${text.slice(0, open)}${inner}${empty ? '' : ','}${text.slice(open)}`)
  return next
}

/**
 * Where the value at `path` (object keys from the top) lies in `text`, valid JSON already parsed: `[start,
 * end)`. A key written twice counts at its last place, as `JSON.parse` reads it; keys are compared decoded.
 */
export function valueSpan(text: string, path: readonly string[]): [number, number] | undefined {
  let start = skipSpace(text, 0)
  let end = skipValue(text, start)
  for (const key of path) {
    if (text[start] !== '{') return undefined
    const member = memberSpan(text, start, key)
    if (member === undefined) return undefined
    ;[start, end] = member
  }
  return [start, end]
}

function memberSpan(text: string, open: number, key: string): [number, number] | undefined {
  let found: [number, number] | undefined
  let i = skipSpace(text, open + 1)
  if (text[i] === '}') return undefined
  for (;;) {
    const keyEnd = skipString(text, i)
    const name = JSON.parse(text.slice(i, keyEnd)) as string
    const valueStart = skipSpace(text, skipSpace(text, keyEnd) + 1)
    const valueEnd = skipValue(text, valueStart)
    if (name === key) found = [valueStart, valueEnd]
    i = skipSpace(text, valueEnd)
    if (text[i] === '}') return found
    i = skipSpace(text, i + 1)
  }
}

const SPACE = new Set([' ', '\t', '\n', '\r'])
const VALUE_END = new Set([',', '}', ']', ' ', '\t', '\n', '\r'])

function skipSpace(text: string, i: number): number {
  while (SPACE.has(text[i] as string)) i++
  return i
}

function skipString(text: string, i: number): number {
  let j = i + 1
  while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1
  return j + 1
}

function skipValue(text: string, i: number): number {
  const first = text[i]
  if (first === '"') return skipString(text, i)
  if (first !== '{' && first !== '[') {
    let j = i
    while (j < text.length && !VALUE_END.has(text[j] as string)) j++
    return j
  }
  let depth = 0
  let j = i
  for (;;) {
    const c = text[j]
    if (c === '"') {
      j = skipString(text, j)
      continue
    }
    if (c === '{' || c === '[') depth++
    else if (c === '}' || c === ']') {
      depth--
      if (depth === 0) return j + 1
    }
    j++
  }
}
