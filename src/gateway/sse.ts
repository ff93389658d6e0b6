import type { ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'

export interface SseEvent {
  id?: string | undefined
  event?: string | undefined
  data: string
  retry?: string | undefined
}

export function formatSseEvent(event: SseEvent): string {
  let out = ''
  if (event.event !== undefined) out += `event: ${event.event}\n`
  if (event.id !== undefined) out += `id: ${event.id}\n`
  if (event.retry !== undefined) out += `retry: ${event.retry}\n`
  for (const line of event.data.split('\n')) out += `data: ${line}\n`
  return `${out}\n`
}

/** A line ending as SSE knows them: CRLF, a lone CR, or LF. */
const LINE_END = /\r\n|\r(?!\n)|\n/
/** The blank line that ends an event: two line endings in a row. */
const EVENT_END = /(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)/

/**
 * The last hop of an upstream event stream to the client's `res`, event by event, as bytes arrive: nothing
 * waits for the end of the stream, and backpressure reaches the upstream read. `rewrite` returns the new data
 * of an event (or the same string) and may throw to fail the stream: the events before it are written, and
 * `res` is neither ended nor destroyed, so the caller can still write its last word (errors for the requests
 * left without an answer) and end it. Comments and unchanged events pass byte for byte, line endings included
 * (only invalid UTF-8 would not: SSE is UTF-8).
 */
export class SseRelay extends Writable {
  readonly #res: ServerResponse
  readonly #rewrite: (data: string) => string
  readonly #maxEventBytes: number
  readonly #decoder = new StringDecoder('utf8')
  #buffer = ''

  constructor(res: ServerResponse, rewrite: (data: string) => string, maxEventBytes: number) {
    super()
    this.#res = res
    this.#rewrite = rewrite
    this.#maxEventBytes = maxEventBytes
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#buffer += this.#decoder.write(chunk)
    let out = ''
    try {
      for (let end = EVENT_END.exec(this.#buffer); end !== null; end = EVENT_END.exec(this.#buffer)) {
        const separator = end[0]
        out += this.#transformEvent(this.#buffer.slice(0, end.index), separator)
        this.#buffer = this.#buffer.slice(end.index + separator.length)
      }
      if (this.#buffer.length > this.#maxEventBytes)
        throw new Error(`an upstream event exceeds ${this.#maxEventBytes} bytes`)
    } catch (error) {
      this.#send(out, () => callback(error as Error))
      return
    }
    this.#send(out, callback)
  }

  override _final(callback: (error?: Error | null) => void): void {
    let out: string
    try {
      out = this.#buffer.trim() === '' ? this.#buffer : this.#transformEvent(this.#buffer, '\n\n')
    } catch (error) {
      callback(error as Error)
      return
    }
    this.#send(out, callback)
  }

  /** Writes to the client; calls back once it took the text, or with an error once it is gone. */
  #send(text: string, callback: (error?: Error | null) => void): void {
    const res = this.#res
    if (res.destroyed) {
      callback(new Error('the client went away'))
      return
    }
    if (text === '' || res.write(text)) {
      callback()
      return
    }
    const done = () => {
      res.off('drain', done).off('close', done)
      callback()
    }
    res.on('drain', done).on('close', done)
  }

  /** The event as the client gets it: `block` and its `separator` as they came, unless its data is rewritten. */
  #transformEvent(block: string, separator: string): string {
    const event: SseEvent = { data: '' }
    const data: string[] = []
    for (const line of block.split(LINE_END)) {
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'data') data.push(value)
      else if (field === 'id' || field === 'event' || field === 'retry') event[field] = value
    }
    // No data, or empty data (the priming event of a resumable stream): nothing to read.
    if (data.join('').trim() === '') return block + separator
    event.data = data.join('\n')
    const rewritten = this.#rewrite(event.data)
    return rewritten === event.data ? block + separator : formatSseEvent({ ...event, data: rewritten })
  }
}
