import type { ServerResponse } from 'node:http'
import { sendJsonText, sendStatus } from '../http.ts'
import { isResponse, type JsonRpcId, type JsonRpcMessage } from '../jsonrpc.ts'
import type { EventStream } from './event-stream.ts'
import { textOf } from './raw.ts'

/** A JSON-RPC id as a map key: `1` and `"1"` are different requests. */
export const idKey = (id: JsonRpcId): string => `${typeof id}:${id}`

/** Where the answers to forwarded requests go: a client's POST, or the bridge itself. */
export interface Receiver {
  readonly open: boolean
  send(message: JsonRpcMessage): boolean
  drop(clientKey: string): void
  drained(): Promise<void>
}

/** Turns the child's answer to a request of `method` into the one the client gets (filtered, reshaped). */
export type AnswerRewrite = (answer: JsonRpcMessage, method: string | undefined) => JsonRpcMessage

export interface PostSinkOptions {
  res: ServerResponse
  /** The POST's requests: the answers it waits for. */
  requests: readonly JsonRpcMessage[]
  /** A resumable SSE stream for the answers; without one they are collected into one JSON body. */
  stream: EventStream | undefined
  batch: boolean
  /** Headers of the answer (the new session's id after an `initialize`). */
  headers: Record<string, string>
  rewrite: AnswerRewrite
  /** The HTTP status of a single JSON answer (a batch is always 200); 200 when not given. */
  status?: (answer: JsonRpcMessage) => number
}

/**
 * The responses one POST waits for, and where they go: a resumable SSE stream, or one JSON body that is
 * lost with its connection. Each answer is rewritten on its way in, knowing the method it answers.
 */
export class PostSink implements Receiver {
  readonly #pending: Set<string>
  /** The method of each awaited request, by client id (as `idKey`). */
  readonly #methods: ReadonlyMap<string, string | undefined>
  readonly #collected: JsonRpcMessage[] = []
  readonly #res: ServerResponse
  readonly #batch: boolean
  readonly #headers: Record<string, string>
  readonly #rewrite: AnswerRewrite
  readonly #status: (answer: JsonRpcMessage) => number
  readonly stream: EventStream | undefined
  onDone: () => void = () => {}

  constructor(options: PostSinkOptions) {
    this.#res = options.res
    this.#methods = new Map(options.requests.map((m) => [idKey(m.id as JsonRpcId), m.method]))
    this.#pending = new Set(this.#methods.keys())
    this.stream = options.stream
    this.#batch = options.batch
    this.#headers = options.headers
    this.#rewrite = options.rewrite
    this.#status = options.status ?? (() => 200)
    options.stream?.attach(options.res, options.headers)
  }

  /** The client ids (as `idKey`) still without an answer. */
  get waiting(): readonly string[] {
    return [...this.#pending]
  }

  /** Still waiting for answers that someone can receive: now, or after resuming the stream. */
  get open(): boolean {
    return this.#pending.size > 0 && (this.stream !== undefined || !this.#res.destroyed)
  }

  send(message: JsonRpcMessage): boolean {
    let outgoing = message
    let done = false
    if (isResponse(message)) {
      const key = idKey(message.id as JsonRpcId)
      outgoing = this.#rewrite(message, this.#methods.get(key))
      done = this.#pending.delete(key)
    }
    let flowing = true
    if (this.stream) flowing = this.stream.write(outgoing)
    else if (done) this.#collected.push(outgoing)
    if (done && this.#pending.size === 0) this.#finish()
    return flowing
  }

  /** The client cancelled the request: no answer will come. */
  drop(key: string): void {
    if (this.#pending.delete(key) && this.#pending.size === 0) this.#finish()
  }

  #finish(): void {
    if (this.stream) this.stream.finish()
    else if (this.#collected.length === 0) sendStatus(this.#res, 202, this.#headers)
    else if (this.#batch)
      sendJsonText(this.#res, 200, `[${this.#collected.map(textOf).join(',')}]`, this.#headers)
    else {
      const [answer] = this.#collected as [JsonRpcMessage]
      sendJsonText(this.#res, this.#status(answer), textOf(answer), this.#headers)
    }
    this.onDone()
  }

  drained(): Promise<void> {
    return this.stream?.drained() ?? Promise.resolve()
  }
}

/** The bridge's own requests to a child (its own `initialize`). */
export class InternalReceiver implements Receiver {
  open = true
  readonly answer: Promise<JsonRpcMessage>
  #resolve: (message: JsonRpcMessage) => void = () => {}

  constructor() {
    this.answer = new Promise((resolve) => {
      this.#resolve = resolve
    })
  }

  send(message: JsonRpcMessage): boolean {
    this.open = false
    this.#resolve(message)
    return true
  }

  drop(): void {}

  drained(): Promise<void> {
    return Promise.resolve()
  }
}
