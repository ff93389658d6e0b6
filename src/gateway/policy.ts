import type { Guard, VerifiedToken } from '../guard/index.ts'
import type { JsonRpcMessage } from './jsonrpc.ts'

/** Methods an anonymous client may call when `allow_anonymous_mcp_discovery` is on. */
const DISCOVERY_METHODS = new Set(['initialize', 'notifications/initialized', 'tools/list', 'ping'])

export interface ToolRules {
  tools: Readonly<Record<string, readonly string[]>>
  defaultToolScopes: readonly string[]
  usersOnlyTools: ReadonlySet<string>
  allowMachineClients: boolean
}

/**
 * Per-tool authorization: which scopes a `tools/call` needs, which tools a token may see, and what a token
 * without a user (client credentials) may do at all.
 */
export class ToolPolicy {
  readonly #tools: Readonly<Record<string, readonly string[]>>
  readonly #defaultScopes: readonly string[]
  readonly #usersOnly: ReadonlySet<string>
  readonly #allowMachineClients: boolean
  readonly #guard: Guard

  constructor(rules: ToolRules, guard: Guard) {
    this.#tools = rules.tools
    this.#defaultScopes = rules.defaultToolScopes
    this.#usersOnly = rules.usersOnlyTools
    this.#allowMachineClients = rules.allowMachineClients
    this.#guard = guard
  }

  /**
   * Why a token acting for no user may not send these messages, or undefined when it may (or acts for a
   * user): machine clients need `allow_machine_clients`, and never call a `users_only` tool.
   */
  machineRefusal(messages: readonly JsonRpcMessage[], token: VerifiedToken): string | undefined {
    if (token.actor !== 'client') return undefined
    if (!this.#allowMachineClients) {
      return 'this MCP server does not accept tokens a client obtained for itself (client credentials); a user must sign in'
    }
    const tool = messages.find(
      (m) => m.method === 'tools/call' && this.#usersOnly.has(String(m.params?.name)),
    )
    return tool
      ? `the tool ${String(tool.params?.name)} may be called only on behalf of a signed-in user`
      : undefined
  }

  scopesFor(tool: string): readonly string[] {
    return Object.hasOwn(this.#tools, tool) ? (this.#tools[tool] as readonly string[]) : this.#defaultScopes
  }

  /** Every scope the `tools/call` requests of a message batch need together. */
  requiredScopes(messages: readonly JsonRpcMessage[]): string[] {
    const scopes = new Set<string>()
    for (const message of messages) {
      if (message.method !== 'tools/call') continue
      for (const scope of this.scopesFor(String(message.params?.name ?? ''))) scopes.add(scope)
    }
    return [...scopes]
  }

  /**
   * `tools/list` shows a tool only when a `tools/call` of it would pass (the guard's scope mode and
   * implications included, `users_only` for machine clients); anonymous discovery sees them all. The same
   * `result` when no tool is hidden, so that the answer can go on as the upstream sent it.
   */
  filterToolsList(result: unknown, token: VerifiedToken | undefined): unknown {
    if (token === undefined || typeof result !== 'object' || result === null) return result
    const tools = (result as { tools?: unknown }).tools
    if (!Array.isArray(tools)) return result
    const visible = tools.filter(
      (tool: { name?: unknown }) =>
        !(token.actor === 'client' && this.#usersOnly.has(String(tool?.name))) &&
        this.#guard.allows(token, [...this.#guard.options.scopes, ...this.scopesFor(String(tool?.name))]),
    )
    return visible.length === tools.length ? result : { ...result, tools: visible }
  }
}

/** Whether a body (none is not one) holds discovery methods only. */
export const isDiscoveryOnly = (messages: readonly JsonRpcMessage[]): boolean =>
  messages.length > 0 && messages.every((m) => m.method !== undefined && DISCOVERY_METHODS.has(m.method))
