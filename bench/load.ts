/**
 * The HTTP load generator, run as a child process so it does not share the server's event loop. Each
 * keep-alive connection sends the next request as soon as the previous answer ends. It writes a prebuilt
 * request on raw sockets and reads only the status and the framing (Content-Length or chunked): Node's own http client tops out near
 * 10 k req/s here, below what a bare node:http server answers, so it would have measured itself.
 * Usage: spawned with an IPC channel and a LoadConfig as JSON argument; it sends 'measuring' when the
 * warm-up ends, so the server can time its own CPU over the same window, then the LoadReport.
 */
import { connect, type Socket } from 'node:net'
import { timeLoop } from './measure.ts'

export interface LoadConfig {
  port: number
  path: string
  authorization?: string
  /**
   * The JSON-RPC request each connection sends, without `jsonrpc` and `id`: each connection numbers its
   * own, so no two requests in flight share an id (an MCP session refuses that). `tools/list` when unset.
   */
  message?: Record<string, unknown>
  /** More request headers, e.g. the MCP accept, protocol-version and session headers. */
  headers?: Record<string, string>
  connections: number
  seconds: number
}

export interface LoadReport {
  requests: number
  seconds: number
  p50Ms: number
  p99Ms: number
  /** Answers other than 200: the benchmark is void if there is any. */
  failures: number
}

interface Connection {
  socket: Socket
  request: Buffer
  received: Buffer
  waiting?: (status: number) => void
}

async function run(config: LoadConfig): Promise<LoadReport> {
  const idle = await Promise.all(
    Array.from({ length: config.connections }, (_, i) => open(config.port, requestFor(config, i + 1))),
  )
  let latencies: number[] = []
  let failures = 0
  // timeLoop runs one chain per connection, so a connection is always free when a chain asks for one.
  const send = () =>
    new Promise<void>((resolve) => {
      const connection = idle.pop() as Connection
      const start = performance.now()
      connection.waiting = (status) => {
        latencies.push(performance.now() - start)
        if (status !== 200) failures++
        idle.push(connection)
        resolve()
      }
      connection.socket.write(connection.request)
    })
  await timeLoop(send, { seconds: config.seconds / 4, concurrency: config.connections })
  latencies = []
  process.send?.('measuring')
  const measured = await timeLoop(send, { seconds: config.seconds, concurrency: config.connections })
  for (const { socket } of idle) socket.destroy()
  const sorted = Float64Array.from(latencies).sort()
  const percentile = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN
  return {
    requests: measured.ops,
    seconds: measured.seconds,
    p50Ms: percentile(0.5),
    p99Ms: percentile(0.99),
    failures,
  }
}

function requestFor(config: LoadConfig, id: number): Buffer {
  const body = JSON.stringify({ jsonrpc: '2.0', id, ...(config.message ?? { method: 'tools/list' }) })
  return Buffer.from(
    [
      `POST ${config.path} HTTP/1.1`,
      `host: 127.0.0.1:${config.port}`,
      'content-type: application/json',
      `content-length: ${Buffer.byteLength(body)}`,
      ...(config.authorization ? [`authorization: ${config.authorization}`] : []),
      ...Object.entries(config.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
      '',
      body,
    ].join('\r\n'),
  )
}

function open(port: number, request: Buffer): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const connection: Connection = { socket: connect(port, '127.0.0.1'), request, received: Buffer.alloc(0) }
    const { socket } = connection
    socket.setNoDelay(true)
    socket.once('connect', () => resolve(connection))
    socket.on('error', reject)
    socket.on('close', () => {
      if (connection.waiting) throw new Error('the server closed a connection with a request in flight')
    })
    socket.on('data', (chunk: Buffer) => {
      connection.received = connection.received.length ? Buffer.concat([connection.received, chunk]) : chunk
      const response = completeResponse(connection.received)
      if (!response) return
      connection.received = connection.received.subarray(response.length)
      const waiting = connection.waiting
      connection.waiting = undefined
      waiting?.(response.status)
    })
  })
}

/** The status and byte length of the first response in `buffer`, once all of it has arrived. */
function completeResponse(buffer: Buffer): { status: number; length: number } | undefined {
  const headerEnd = buffer.indexOf('\r\n\r\n')
  if (headerEnd < 0) return undefined
  const head = buffer.toString('latin1', 0, headerEnd)
  const status = Number(head.slice(9, 12))
  const contentLength = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1]
  if (contentLength !== undefined) {
    const length = headerEnd + 4 + Number(contentLength)
    return buffer.length >= length ? { status, length } : undefined
  }
  // An SSE answer to a POST streams chunked and ends once its JSON-RPC response is sent.
  if (!/\r\ntransfer-encoding: *chunked/i.test(head))
    throw new Error('the server answered without Content-Length or chunked encoding')
  const length = chunkedEnd(buffer, headerEnd + 4)
  return length === undefined ? undefined : { status, length }
}

/** Where a chunked body that starts at `offset` ends (no trailers), once its last chunk has arrived. */
function chunkedEnd(buffer: Buffer, offset: number): number | undefined {
  let at = offset
  for (;;) {
    const lineEnd = buffer.indexOf('\r\n', at)
    if (lineEnd < 0) return undefined
    const size = Number.parseInt(buffer.toString('latin1', at, lineEnd), 16)
    at = lineEnd + 2 + size + 2
    if (buffer.length < at) return undefined
    if (size === 0) return at
  }
}

if (import.meta.main) {
  const report = await run(JSON.parse(process.argv[2] ?? '{}') as LoadConfig)
  process.send?.(report, undefined, {}, () => process.disconnect?.())
}
