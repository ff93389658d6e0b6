type Labels = Record<string, string>

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

const escapeLabel = (c: string): string => (c === '\n' ? '\\n' : `\\${c}`)

/** Built on every request (its method and status), so a plain loop: no entries array, no closure per value. */
const labelText = (labels: Labels): string => {
  let text = ''
  for (const name in labels)
    text += `${text === '' ? '{' : ','}${name}="${(labels[name] as string).replace(/[\\"\n]/g, escapeLabel)}"`
  return text === '' ? '' : `${text}}`
}

class Counter {
  readonly #values = new Map<string, number>()
  readonly name: string
  readonly help: string

  constructor(name: string, help: string) {
    this.name = name
    this.help = help
  }

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels)
    this.#values.set(key, (this.#values.get(key) ?? 0) + by)
  }

  render(type = 'counter'): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${type}`]
    for (const [labels, value] of this.#values) lines.push(`${this.name}${labels} ${value}`)
    return lines.join('\n')
  }
}

class Gauge extends Counter {
  constructor(name: string, help: string) {
    super(name, help)
    this.inc({}, 0)
  }

  dec(labels: Labels = {}): void {
    this.inc(labels, -1)
  }

  override render(): string {
    return super.render('gauge')
  }
}

class Histogram {
  readonly #counts = LATENCY_BUCKETS.map(() => 0)
  #sum = 0
  #count = 0
  readonly name: string
  readonly help: string

  constructor(name: string, help: string) {
    this.name = name
    this.help = help
  }

  observe(seconds: number): void {
    for (let i = LATENCY_BUCKETS.length - 1; i >= 0 && seconds <= (LATENCY_BUCKETS[i] as number); i--)
      this.#counts[i] = (this.#counts[i] ?? 0) + 1
    this.#sum += seconds
    this.#count += 1
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`]
    LATENCY_BUCKETS.forEach((bound, i) => {
      lines.push(`${this.name}_bucket{le="${bound}"} ${this.#counts[i]}`)
    })
    lines.push(
      `${this.name}_bucket{le="+Inf"} ${this.#count}`,
      `${this.name}_sum ${this.#sum}`,
      `${this.name}_count ${this.#count}`,
    )
    return lines.join('\n')
  }
}

/** The gateway's Prometheus metrics, rendered in the text exposition format (0.0.4). */
export class GatewayMetrics {
  readonly requests = new Counter(
    'gatehouse_requests_total',
    'HTTP requests to the MCP endpoint, by method and status',
  )
  readonly authFailures = new Counter(
    'gatehouse_auth_failures_total',
    'Requests refused by the guard, by reason',
  )
  readonly upstreamLatency = new Histogram(
    'gatehouse_upstream_latency_seconds',
    'Time until the upstream answered (response headers, or the first response of a stdio child)',
  )
  readonly upstreamErrors = new Counter('gatehouse_upstream_errors_total', 'Upstream failures, by kind')
  readonly sessions = new Gauge('gatehouse_sessions_active', 'MCP sessions the gateway knows')
  readonly streams = new Gauge('gatehouse_streams_active', 'Open response streams (SSE and pending JSON)')

  render(): string {
    const all = [
      this.requests,
      this.authFailures,
      this.upstreamLatency,
      this.upstreamErrors,
      this.sessions,
      this.streams,
    ]
    return `${all.map((m) => m.render()).join('\n')}\n`
  }
}
