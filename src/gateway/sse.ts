import { Transform, type TransformCallback } from 'node:stream'

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

/**
 * Rewrites an event stream event by event, as bytes arrive: nothing waits for the end of the stream, and
 * `pipeline` carries backpressure through. `rewrite` returns the new data of an event, or the same string.
 * Comments and unchanged events pass byte for byte apart from line endings.
 */
export class SseRewriter extends Transform {
  readonly #rewrite: (data: string) => string
  readonly #maxEventBytes: number
  #buffer = ''

  constructor(rewrite: (data: string) => string, maxEventBytes: number) {
    super()
    this.#rewrite = rewrite
    this.#maxEventBytes = maxEventBytes
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#buffer += chunk.toString('utf8').replace(/\r\n?/g, '\n')
    let end = this.#buffer.indexOf('\n\n')
    while (end !== -1) {
      this.push(this.#transformEvent(this.#buffer.slice(0, end)))
      this.#buffer = this.#buffer.slice(end + 2)
      end = this.#buffer.indexOf('\n\n')
    }
    if (this.#buffer.length > this.#maxEventBytes) {
      callback(new Error(`an upstream event exceeds ${this.#maxEventBytes} bytes`))
      return
    }
    callback()
  }

  override _flush(callback: TransformCallback): void {
    if (this.#buffer.trim() !== '') this.push(this.#transformEvent(this.#buffer))
    callback()
  }

  #transformEvent(block: string): string {
    const event: SseEvent = { data: '' }
    const data: string[] = []
    for (const line of block.split('\n')) {
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'data') data.push(value)
      else if (field === 'id' || field === 'event' || field === 'retry') event[field] = value
    }
    if (data.length === 0) return `${block}\n\n`
    event.data = data.join('\n')
    const rewritten = this.#rewrite(event.data)
    return rewritten === event.data ? `${block}\n\n` : formatSseEvent({ ...event, data: rewritten })
  }
}
