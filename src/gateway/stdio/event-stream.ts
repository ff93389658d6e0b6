import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { answered } from '../http.ts'
import type { JsonRpcMessage } from '../jsonrpc.ts'
import { formatSseEvent } from '../sse.ts'
import { textOf } from './raw.ts'

/**
 * What the bridge keeps of its SSE streams for `Last-Event-ID` resumption: the newest events of each stream,
 * for the newest streams of each session (streams still waiting for answers are never dropped). A client
 * that resumes past what is kept gets the kept events only; the final response of a stream is its newest
 * event, so it is always among them.
 */
export const REPLAY_LIMITS = { eventsPerStream: 100, streamsPerSession: 16 } as const

const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }

/** How long a client waits before it resumes a stream the gateway ended (the SSE `retry:` field). */
export const RETRY_MS = 1000

/**
 * One SSE stream, its events numbered `<stream id>/<n>`. The client may lose the connection at any time
 * and resume with a GET carrying the last id it saw: the kept events after it are replayed and the
 * stream goes on over the new response. Events written while no response is attached are only kept.
 * Each response starts with a priming event (an id, `retry:` and empty data, as the transport spec says), so
 * that even a connection lost before the first message has an id to resume from.
 */
export class EventStream {
  readonly id = randomUUID()
  readonly #events: { seq: number; text: string }[] = []
  #seq = 0
  /** The newest event written to some response: a plain GET gets only what came after it. */
  #sent = 0
  #res: ServerResponse | undefined
  #idle: NodeJS.Timeout | undefined
  finished = false

  get attached(): boolean {
    return this.#res !== undefined && !this.#res.destroyed
  }

  /**
   * Serves the stream on `res` from the event after `afterSeq`; a response it was on before is ended. With
   * `idleTimeoutMs`, the response ends after that long without an event (no heartbeat: a stream kept busy
   * by the gateway alone would keep its session from ever being reaped); the client reconnects if it lives.
   */
  attach(
    res: ServerResponse,
    headers: Record<string, string>,
    afterSeq = this.#sent,
    idleTimeoutMs?: number,
  ): void {
    if (answered(res)) return
    const previous = this.#res
    this.#res = res
    clearTimeout(this.#idle)
    this.#idle = idleTimeoutMs === undefined ? undefined : setTimeout(() => res.end(), idleTimeoutMs)
    previous?.end()
    res.writeHead(200, { ...SSE_HEADERS, ...headers })
    res.write(formatSseEvent({ id: `${this.id}/${afterSeq}`, retry: String(RETRY_MS), data: '' }))
    for (const event of this.#events) if (event.seq > afterSeq) res.write(event.text)
    this.#sent = this.#seq
    res.on('close', () => {
      if (this.#res !== res) return
      this.#res = undefined
      clearTimeout(this.#idle)
    })
    if (this.finished) res.end()
  }

  /** Writes (and keeps) a message; returns false when the client is slow and the child should wait. */
  write(message: JsonRpcMessage): boolean {
    this.#seq += 1
    const text = formatSseEvent({
      id: `${this.id}/${this.#seq}`,
      event: 'message',
      data: textOf(message),
    })
    this.#events.push({ seq: this.#seq, text })
    if (this.#events.length > REPLAY_LIMITS.eventsPerStream) this.#events.shift()
    const res = this.#res
    // A finished stream's response is ended: a write would fail with an 'error' event nobody handles.
    if (res === undefined || res.destroyed || res.writableEnded) return true
    this.#sent = this.#seq
    this.#idle?.refresh()
    return res.write(text)
  }

  finish(): void {
    this.finished = true
    this.#res?.end()
  }

  /** Resolves once the client took what was written, or went away. */
  drained(): Promise<void> {
    const res = this.#res
    if (res === undefined || res.destroyed || !res.writableNeedDrain) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        res.off('drain', done)
        res.off('close', done)
        resolve()
      }
      res.once('drain', done)
      res.once('close', done)
    })
  }
}

/** `<stream id>/<n>` as {@link EventStream} numbers its events. */
export function parseEventId(value: string): { streamId: string; seq: number } | undefined {
  const match = /^([0-9a-f-]{36})\/(\d{1,15})$/.exec(value)
  return match ? { streamId: match[1] as string, seq: Number(match[2]) } : undefined
}
