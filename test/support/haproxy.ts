import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const HAPROXY = '/usr/sbin/haproxy'
export const haproxyInstalled = () => existsSync(HAPROXY)

export interface Backend {
  /** The `server` name, echoed in the `X-Served-By` response header. */
  name: string
  port: number
}

/**
 * The HAProxy configuration docs/scaling.md shows, for a test: round robin over `backends`, health checks
 * on /readyz (with the public Host, which a loopback-bound gateway requires), a request refused by a dead
 * instance's closed port retried on another, and `X-Served-By` naming the instance that answered. `sticky`
 * pins each MCP session to the instance that created it, by its `Mcp-Session-Id` (the stdio upstream).
 */
export function haproxyConfig(options: { port: number; backends: Backend[]; sticky: boolean }): string {
  const host = `127.0.0.1:${options.port}`
  return `global
  maxconn 4096

defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 5s
  timeout check 3s
  retries 3
  retry-on conn-failure
  option redispatch 1

frontend mcp
  bind 127.0.0.1:${options.port}
  option forwardfor
  default_backend gatehouse

backend gatehouse
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host ${host}
  http-check expect status 200
  default-server inter 500ms fall 3 rise 2
${
  options.sticky
    ? `  stick-table type string len 128 size 100k expire 30m
  stick store-response res.hdr(mcp-session-id)
  stick match req.hdr(mcp-session-id)
`
    : ''
}  http-response set-header X-Served-By %s
${options.backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} check`).join('\n')}
`
}

/** HAProxy in the foreground with that configuration, until `stop`. */
export async function startHaproxy(
  dir: string,
  options: { port: number; backends: Backend[]; sticky: boolean },
): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const path = join(dir, 'haproxy.cfg')
  await writeFile(path, haproxyConfig(options))
  const check = spawn(HAPROXY, ['-c', '-q', '-f', path], { stdio: ['ignore', 'ignore', 'pipe'] })
  let errors = ''
  check.stderr.on('data', (chunk: Buffer) => {
    errors += chunk
  })
  const [code] = await once(check, 'exit')
  if (code !== 0) throw new Error(`haproxy refused its configuration: ${errors}`)
  const child = spawn(HAPROXY, ['-db', '-f', path], { stdio: ['ignore', 'ignore', 'pipe'] })
  child.stderr?.resume()
  const exited = once(child, 'exit')
  const url = `http://127.0.0.1:${options.port}`
  // Ready once every backend has answered through it (round robin: one after the other).
  const answered = new Set<string>()
  for (let attempt = 0; answered.size < options.backends.length; attempt++) {
    if (attempt > 300 || child.exitCode !== null)
      throw new Error(`haproxy did not come up; backends that answered: ${[...answered]}`)
    const answer = await fetch(`${url}/healthz`).catch(() => undefined)
    const by = answer?.status === 200 ? answer.headers.get('x-served-by') : null
    await answer?.arrayBuffer()
    if (by) answered.add(by)
    else await sleep(100)
  }
  return {
    url,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}
