import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'

export interface TcpRelay {
  port: number
  /** Refuses new connections and cuts the open ones, like a database host that went down. */
  down(): Promise<void>
  /** Accepts again on the same port. Call `down` at the end: a relay that is up keeps the process alive. */
  up(): Promise<void>
}

/**
 * A TCP relay on a loopback port to `target`: a test points a client (a PostgreSQL pool) at it and takes the
 * service away and back without touching the real server, which other tests share.
 */
export async function tcpRelay(target: { host: string; port: number }): Promise<TcpRelay> {
  const sockets = new Set<Socket>()
  let server: Server | undefined
  let port = 0
  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  }
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const listening = createServer((client) => {
        const upstream = connect(target.port, target.host)
        track(client)
        track(upstream)
        client.on('error', () => upstream.destroy())
        upstream.on('error', () => client.destroy())
        client.pipe(upstream).pipe(client)
      })
      listening.once('error', reject)
      listening.listen(port, '127.0.0.1', () => {
        server = listening
        port = (listening.address() as AddressInfo).port
        resolve()
      })
    })
  await listen()
  return {
    get port() {
      return port
    },
    async down() {
      const closing = server
      server = undefined
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => (closing ? closing.close(() => resolve()) : resolve()))
    },
    up: listen,
  }
}
