import type { Guard, VerifiedToken } from '../guard/index.ts'
import type { JsonRpcMessage } from './jsonrpc.ts'

/** Methods an anonymous client may call when `allow_anonymous_mcp_discovery` is on. */
const DISCOVERY_METHODS = new Set(['initialize', 'notifications/initialized', 'tools/list', 'ping'])

/** Per-tool authorization: which scopes a `tools/call` needs, and which tools a token may see. */
export class ToolPolicy {
  readonly #tools: Readonly<Record<string, readonly string[]>>
  readonly #defaultScopes: readonly string[]
  readonly #guard: Guard

  constructor(
    tools: Readonly<Record<string, readonly string[]>>,
    defaultScopes: readonly string[],
    guard: Guard,
  ) {
    this.#tools = tools
    this.#defaultScopes = defaultScopes
    this.#guard = guard
  }

  scopesFor(tool: string): readonly string[] {
    return Object.hasOwn(this.#tools, tool) ? (this.#tools[tool] as readonly string[]) : this.#defaultScopes
  }

  /** Every scope the `tools/call` requests of a message batch need together. */
  requiredScopes(messages: readonly JsonRpcMessage[]): string[] {
    const scopes = new Set<string>()
    for (const m of messages) {
      if (m.method !== 'tools/call') continue
      for (const scope of this.scopesFor(String(m.params?.name ?? ''))) scopes.add(scope)
    }
    return [...scopes]
  }

  /**
   * `tools/list` shows a tool only when a `tools/call` of it would pass (the guard's scope mode and
   * implications included); anonymous discovery sees them all.
   */
  filterToolsList(result: unknown, token: VerifiedToken | undefined): unknown {
    if (token === undefined || typeof result !== 'object' || result === null) return result
    const tools = (result as { tools?: unknown }).tools
    if (!Array.isArray(tools)) return result
    return {
      ...result,
      tools: tools.filter((tool: { name?: unknown }) =>
        this.#guard.allows(token, [...this.#guard.options.scopes, ...this.scopesFor(String(tool?.name))]),
      ),
    }
  }
}

export const isDiscoveryOnly = (messages: readonly JsonRpcMessage[]): boolean =>
  messages.every((m) => m.method !== undefined && DISCOVERY_METHODS.has(m.method))
