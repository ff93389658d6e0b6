/**
 * How required scopes combine (Apollo MCP Server's `scope_mode`): every one, any one, or no check at all.
 */
export type ScopeMode = 'require_all' | 'require_any' | 'disabled'

/**
 * Scope hierarchy (MCP 2026-07-28 "Step-Up Authorization Flow": a broader scope implies narrower ones).
 * Maps a scope to the scopes it implies; implication is transitive.
 */
export type ScopeImplications = Readonly<Record<string, readonly string[]>>

export function expandScopes(granted: readonly string[], implications: ScopeImplications): Set<string> {
  const expanded = new Set<string>()
  const pending = [...granted]
  for (let scope = pending.pop(); scope !== undefined; scope = pending.pop()) {
    if (expanded.has(scope)) continue
    expanded.add(scope)
    pending.push(...(implications[scope] ?? []))
  }
  return expanded
}

/**
 * The required scopes that the granted ones (expanded by {@link expandScopes}, which a caller keeps per token)
 * do not satisfy; empty when access is allowed.
 */
export function missingScopes(
  have: ReadonlySet<string>,
  required: readonly string[],
  mode: ScopeMode,
): string[] {
  if (mode === 'disabled' || required.length === 0) return []
  const missing = required.filter((scope) => !have.has(scope))
  if (mode === 'require_any' && missing.length < required.length) return []
  return missing
}

/**
 * The `scope` of a 403 challenge: what the operation needs plus the token's scopes that are still relevant,
 * so 2025-11-25 clients, which do not merge scopes themselves, keep what they had (MCP RS-20). "Relevant"
 * means known to this resource: listed in `scopes_supported` or among the required ones.
 */
export function stepUpScopes(
  granted: readonly string[],
  required: readonly string[],
  known: readonly string[],
): string[] {
  const relevant = new Set([...known, ...required])
  return [...new Set([...granted.filter((s) => relevant.has(s)), ...required])]
}
