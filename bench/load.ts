/**
 * The HTTP load generator, run as a child process so it does not share the server's event loop. Each
 * keep-alive connection sends the next request as soon as the previous answer ends. It writes a prebuilt
 * request on raw sockets and reads only the status and Content-Length: Node's own http client tops out near
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

const REQUEST_BODY = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'

interface Connection {
  socket: Socket
  received: Buffer
  waiting?: (status: number) => void
}

async function run(config: LoadConfig): Promise<LoadReport> {
  const request = Buffer.from(
    [
      `POST ${config.path} HTTP/1.1`,
      `host: 127.0.0.1:${config.port}`,
      'content-type: application/json',
      `content-length: ${Buffer.byteLength(REQUEST_BODY)}`,
      ...(config.authorization ? [`authorization: ${config.authorization}`] : []),
      '',
      REQUEST_BODY,
    ].join('\r\n'),
  )
  const idle = await Promise.all(Array.from({ length: config.connections }, () => open(config.port)))
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
      connection.socket.write(request)
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

function open(port: number): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const connection: Connection = { socket: connect(port, '127.0.0.1'), received: Buffer.alloc(0) }
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
  const contentLength = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1]
  if (contentLength === undefined) throw new Error('the server answered without Content-Length')
  const length = headerEnd + 4 + Number(contentLength)
  return buffer.length >= length ? { status: Number(head.slice(9, 12)), length } : undefined
}

if (import.meta.main) {
  const report = await run(JSON.parse(process.argv[2] ?? '{}') as LoadConfig)
  process.send?.(report, undefined, {}, () => process.disconnect?.())
}
