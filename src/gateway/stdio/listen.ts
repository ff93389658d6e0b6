/**
 * `subscriptions/listen` for 2026-07-28 clients of the stdio bridge. The revision replaces the GET stream and
 * `resources/subscribe` with one request whose SSE answer carries the notifications the client opted in to,
 * each tagged with the request's id; a 2025 child knows none of it, so the bridge subscribes it to resources on
 * the client's behalf (once per URI, however many streams name it) and sorts its notifications onto the streams.
 */
import type { ServerResponse } from 'node:http'
import type { JsonRpcId, JsonRpcMessage } from '../jsonrpc.ts'
import { EventStream } from './event-stream.ts'

/** Open listen streams a subject may hold at once: each holds a connection and the child's subscriptions. */
export const LISTEN_LIMITS = { streamsPerSubject: 8, urisPerStream: 64 } as const

const SUBSCRIPTION_ID_META = 'io.modelcontextprotocol/subscriptionId'

/** The list-change notifications a filter opts in to, and the capability of the child that sends each. */
const LIST_CHANGES = {
  toolsListChanged: ['notifications/tools/list_changed', 'tools'],
  promptsListChanged: ['notifications/prompts/list_changed', 'prompts'],
  resourcesListChanged: ['notifications/resources/list_changed', 'resources'],
} as const
type ListChange = keyof typeof LIST_CHANGES

/** What a stream delivers: the `SubscriptionFilter` of the revision, as agreed. */
export interface ListenFilter {
  lists: ReadonlySet<ListChange>
  uris: ReadonlySet<string>
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/** The client's `params.notifications`, or why it is not a `SubscriptionFilter`. */
export function parseFilter(value: unknown): ListenFilter | string {
  if (!isObject(value)) return 'params.notifications must be an object'
  const lists = new Set<ListChange>()
  for (const name of Object.keys(LIST_CHANGES) as ListChange[]) {
    const flag = value[name]
    if (flag !== undefined && typeof flag !== 'boolean')
      return `params.notifications.${name} must be a boolean`
    if (flag === true) lists.add(name)
  }
  const uris = value.resourceSubscriptions ?? []
  if (!Array.isArray(uris) || !uris.every((uri) => typeof uri === 'string'))
    return 'params.notifications.resourceSubscriptions must be an array of strings'
  if (uris.length > LISTEN_LIMITS.urisPerStream)
    return `params.notifications.resourceSubscriptions names more than ${LISTEN_LIMITS.urisPerStream} URIs`
  return { lists, uris: new Set(uris as string[]) }
}

/**
 * The part of `asked` the child can honour, per its `initialize` capabilities. Resource updates only where
 * the child is the subject's own: a shared child's say nothing of whose subscription they answer.
 */
export function honoured(asked: ListenFilter, capabilities: unknown, shared: boolean): ListenFilter {
  const caps = isObject(capabilities) ? capabilities : {}
  const has = (name: string, flag: string) => isObject(caps[name]) && caps[name][flag] === true
  const lists = new Set([...asked.lists].filter((name) => has(LIST_CHANGES[name][1], 'listChanged')))
  const uris = shared || !has('resources', 'subscribe') ? new Set<string>() : asked.uris
  return { lists, uris }
}

/** The filter as the acknowledgement reports it. */
function filterJson(filter: ListenFilter): Record<string, unknown> {
  const json: Record<string, unknown> = {}
  for (const name of filter.lists) json[name] = true
  if (filter.uris.size > 0) json.resourceSubscriptions = [...filter.uris]
  return json
}

/** `message` with the stream's id added to its `_meta`, as every message on a listen stream carries it. */
function tagged(message: JsonRpcMessage, id: JsonRpcId): JsonRpcMessage {
  const params = message.params ?? {}
  const meta = isObject(params._meta) ? params._meta : {}
  return { ...message, params: { ...params, _meta: { ...meta, [SUBSCRIPTION_ID_META]: id } } }
}

/**
 * One open `subscriptions/listen` answer: an SSE stream that opens with the acknowledgement and ends with
 * the request's result when the bridge ends it (idle, shutdown, the child gone), or with its connection.
 * A client that reads slower than notifications come gets each distinct one once when it catches up: they
 * only say "read again", so a repeat adds nothing and the backlog stays bounded.
 */
export class ListenStream {
  readonly id: JsonRpcId
  readonly filter: ListenFilter
  readonly #stream = new EventStream()
  readonly #res: ServerResponse
  readonly #backlog = new Map<string, JsonRpcMessage>()
  readonly #idle: NodeJS.Timeout | undefined
  #ended = false
  onClose: () => void = () => {}

  constructor(res: ServerResponse, id: JsonRpcId, filter: ListenFilter, idleTimeoutMs: number | undefined) {
    this.id = id
    this.filter = filter
    this.#res = res
    this.#stream.attach(res, {})
    this.#idle = idleTimeoutMs === undefined ? undefined : setTimeout(() => this.end(), idleTimeoutMs)
    res.on('close', () => {
      clearTimeout(this.#idle)
      this.#ended = true
      this.onClose()
    })
    this.#write({
      jsonrpc: '2.0',
      method: 'notifications/subscriptions/acknowledged',
      params: { notifications: filterJson(filter) },
    })
  }

  /** Passes on a child's notification if this stream opted in to it; whether it did. */
  deliver(message: JsonRpcMessage): boolean {
    if (!this.#wants(message)) return false
    this.#idle?.refresh()
    if (!this.#res.writableNeedDrain) {
      this.#write(message)
      return true
    }
    if (this.#backlog.size === 0) this.#res.once('drain', () => this.#flush())
    this.#backlog.set(`${message.method} ${message.params?.uri ?? ''}`, message)
    return true
  }

  /** Ends the subscription gracefully: the request's result, then the end of the stream. */
  end(): void {
    if (this.#ended) return
    this.#ended = true
    this.#stream.write({
      jsonrpc: '2.0',
      id: this.id,
      result: { resultType: 'complete', _meta: { [SUBSCRIPTION_ID_META]: this.id } },
    })
    this.#stream.finish()
  }

  #wants(message: JsonRpcMessage): boolean {
    if (this.#ended) return false
    if (message.method === 'notifications/resources/updated')
      return typeof message.params?.uri === 'string' && this.filter.uris.has(message.params.uri)
    return [...this.filter.lists].some((name) => LIST_CHANGES[name][0] === message.method)
  }

  #flush(): void {
    const waiting = [...this.#backlog.values()]
    this.#backlog.clear()
    for (const message of waiting) this.deliver(message)
  }

  #write(message: JsonRpcMessage): void {
    this.#stream.write(tagged(message, this.id))
  }
}

/** Sends the child a request of the bridge's own; resolves with whether it succeeded. */
export type ChildRequest = (method: string, params: Record<string, unknown>) => Promise<boolean>

/**
 * A subject's open listen streams, and the resource subscriptions they hold at its child: `resources/subscribe`
 * when the first stream names a URI, `resources/unsubscribe` when the last one naming it ends.
 */
export class ListenStreams {
  readonly #streams = new Set<ListenStream>()
  readonly #uris = new Map<string, { count: number; subscribed: Promise<boolean> }>()
  /** Unsubscriptions under way: a new subscription to the URI waits for it, so the child ends subscribed. */
  readonly #leaving = new Map<string, Promise<unknown>>()
  readonly #request: ChildRequest
  /** Streams whose subscriptions are being taken: they count against the limit already. */
  #opening = 0

  constructor(request: ChildRequest) {
    this.#request = request
  }

  get size(): number {
    return this.#streams.size + this.#opening
  }

  /**
   * Subscribes the child to `uris` for a new stream; resolves with those it accepted. The stream counts from
   * now on: `add` it, or give the URIs back with `abandon`.
   */
  async subscribe(uris: ReadonlySet<string>): Promise<Set<string>> {
    this.#opening += 1
    const results = await Promise.all(
      [...uris].map(async (uri) => {
        let held = this.#uris.get(uri)
        if (held === undefined) {
          const after = this.#leaving.get(uri) ?? Promise.resolve()
          held = { count: 0, subscribed: after.then(() => this.#request('resources/subscribe', { uri })) }
          this.#uris.set(uri, held)
        }
        held.count += 1
        if (await held.subscribed) return uri
        this.#release(uri)
        return undefined
      }),
    )
    return new Set(results.filter((uri) => uri !== undefined))
  }

  /** Keeps `stream` until its connection closes, then releases its subscriptions. */
  add(stream: ListenStream): void {
    this.#opening -= 1
    this.#streams.add(stream)
    stream.onClose = () => {
      this.#streams.delete(stream)
      for (const uri of stream.filter.uris) this.#release(uri)
    }
  }

  /** Releases subscriptions taken for a stream that never opened (its client left while they were taken). */
  abandon(uris: ReadonlySet<string>): void {
    this.#opening -= 1
    for (const uri of uris) this.#release(uri)
  }

  /** A notification of the child, to every stream that opted in to it. */
  deliver(message: JsonRpcMessage): void {
    for (const stream of this.#streams) stream.deliver(message)
  }

  /** Ends every stream gracefully (the session or the gateway ends). */
  endAll(): void {
    for (const stream of this.#streams) stream.end()
  }

  #release(uri: string): void {
    const held = this.#uris.get(uri)
    if (held === undefined) return
    held.count -= 1
    if (held.count > 0) return
    this.#uris.delete(uri)
    // Only a subscription the child took is undone; one it refused holds nothing.
    const left = held.subscribed.then((taken) => taken && this.#request('resources/unsubscribe', { uri }))
    this.#leaving.set(uri, left)
    void left.then(() => {
      if (this.#leaving.get(uri) === left) this.#leaving.delete(uri)
    })
  }
}
