import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
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
 * waits for the end of the stream, and backpressure reaches the upstream read (`from` pauses while `to` is
 * full). `rewrite` returns the new data of an event (or the same string) and may throw to fail the stream:
 * the events before it are written, and `to` is neither ended nor destroyed, so the caller can still write
 * its last word (errors for the requests left without an answer) and end it. Comments and unchanged events
 * pass byte for byte, line endings included (only invalid UTF-8 would not: SSE is UTF-8). Settles once
 * `from` has ended, all of it is written and `to` is ended, or with the first failure (either side closing
 * early included); `from` is then destroyed.
 *
 * Plain listeners sharing one closure context, not a `Writable` piped into: an idle stream lasts long, and
 * each holds only this.
 */
export function relayEvents(
  from: Readable,
  to: ServerResponse,
  rewrite: (data: string) => string,
  maxEventBytes: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffer = ''
    /** Made once a chunk ends inside a character, which a stream of ASCII JSON never does. */
    let decoder: StringDecoder | undefined
    const settle = (error?: Error) => {
      from.off('data', onData).off('end', onEnd).off('error', settle).off('close', onFromClose)
      to.off('close', onToClose).off('drain', onDrain)
      if (error === undefined) return resolve()
      from.destroy()
      reject(error)
    }
    /** Writes what is ready; false once the client's buffer is full. */
    const send = (text: string) => text === '' || to.write(text)
    const onData = (chunk: Buffer) => {
      if (decoder === undefined && endsWholeCharacter(chunk)) buffer += chunk.toString('utf8')
      else {
        decoder ??= new StringDecoder('utf8')
        buffer += decoder.write(chunk)
      }
      let out = ''
      try {
        for (let end = EVENT_END.exec(buffer); end !== null; end = EVENT_END.exec(buffer)) {
          const separator = end[0]
          out += transformEvent(buffer.slice(0, end.index), separator, rewrite)
          buffer = buffer.slice(end.index + separator.length)
        }
        if (buffer.length > maxEventBytes) throw new Error(`an upstream event exceeds ${maxEventBytes} bytes`)
      } catch (error) {
        send(out)
        settle(error as Error)
        return
      }
      if (!send(out)) from.pause()
    }
    const onDrain = () => from.resume()
    const onEnd = () => {
      let out: string
      try {
        out = buffer.trim() === '' ? buffer : transformEvent(buffer, '\n\n', rewrite)
      } catch (error) {
        settle(error as Error)
        return
      }
      send(out)
      // An upstream may end a stream before its answers: the client resumes it with Last-Event-ID.
      to.end()
      settle()
    }
    const onFromClose = () => {
      if (!from.readableEnded) settle(new Error('the upstream answer ended early'))
    }
    const onToClose = () => {
      if (!to.writableFinished) settle(new Error('the client went away'))
    }
    from.on('data', onData).on('end', onEnd).on('error', settle).on('close', onFromClose)
    to.on('close', onToClose).on('drain', onDrain)
  })
}

/** The event as the client gets it: `block` and its `separator` as they came, unless its data is rewritten. */
function transformEvent(block: string, separator: string, rewrite: (data: string) => string): string {
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
  const rewritten = rewrite(event.data)
  return rewritten === event.data ? block + separator : formatSseEvent({ ...event, data: rewritten })
}

/**
 * Whether `chunk` ends at a character boundary: no UTF-8 sequence that starts in its last three bytes runs
 * past its end. A tail of continuation bytes only is either complete or invalid (decoded the same way then).
 */
function endsWholeCharacter(chunk: Buffer): boolean {
  for (let back = 1; back <= Math.min(3, chunk.length); back++) {
    const byte = chunk[chunk.length - back] as number
    if (byte < 0x80) return true
    if (byte >= 0xc0) return back >= (byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2)
  }
  return true
}
