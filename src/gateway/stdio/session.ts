import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { StdioChild } from './child.ts'
import { EventStream, parseEventId, REPLAY_LIMITS } from './event-stream.ts'
import { ListenStreams } from './listen.ts'

/**
 * One MCP session of the bridge: its id, the child it talks to, and the streams it can resume. A session
 * that does not listen (a stateless subject's) can be sent nothing the child says on its own.
 */
export class BridgeSession {
  readonly id = randomUUID()
  readonly child: StdioChild
  readonly listening: boolean
  /** Messages not tied to a request: the GET stream, kept while no GET is open. */
  readonly standalone = new EventStream()
  readonly #streams = new Map<string, EventStream>([[this.standalone.id, this.standalone]])
  /** Its `subscriptions/listen` streams (a 2026-07-28 subject's session). */
  readonly listens: ListenStreams
  onEnd: () => void = () => {}

  constructor(child: StdioChild, listening: boolean) {
    this.child = child
    this.listening = listening
    this.listens = new ListenStreams((method, params) =>
      child.request(method, params).then(
        (answer) => answer.error === undefined,
        () => false,
      ),
    )
    child.sessions.add(this)
  }

  get busy(): boolean {
    return this.child.inFlight(this) || this.standalone.attached || this.listens.size > 0
  }

  /** A new stream for a POST's answers; the oldest finished streams are forgotten. */
  newStream(): EventStream {
    const stream = new EventStream()
    this.#streams.set(stream.id, stream)
    for (const [id, old] of this.#streams) {
      if (this.#streams.size <= REPLAY_LIMITS.streamsPerSession + 1) break
      if (old.finished) this.#streams.delete(id)
    }
    return stream
  }

  /** Serves a GET: resumes the stream `lastEventId` names, or opens the GET stream. */
  openGetStream(
    res: ServerResponse,
    lastEventId: string | undefined,
    idleTimeoutMs: number | undefined,
  ): 'ok' | 'conflict' | 'unknown_event' {
    if (lastEventId === undefined) {
      if (this.standalone.attached) return 'conflict'
      this.standalone.attach(res, {}, undefined, idleTimeoutMs)
      return 'ok'
    }
    const event = parseEventId(lastEventId)
    const stream = event && this.#streams.get(event.streamId)
    if (event === undefined || stream === undefined) return 'unknown_event'
    stream.attach(res, {}, event.seq, stream === this.standalone ? idleTimeoutMs : undefined)
    return 'ok'
  }
}
