/**
 * Finds credentials in log output: anything token-shaped, a query or form value of a credential parameter,
 * a credential header or field that was not redacted, a session cookie, and the literal secret values a test
 * used (its passwords, the server secret). Redacted values (`[redacted]`) are not findings.
 */
const PATTERNS: Record<string, RegExp> = {
  jwt: /eyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]*/,
  'credential parameter':
    /\b(code|state|access_token|refresh_token|id_token|code_verifier|client_secret|password)=(?!\[redacted\])[^&\s"]+/i,
  'credential field or header':
    /"(access_token|refresh_token|id_token|client_secret|password|secret|authorization|proxy-authorization|dpop|cookie|set-cookie)"\s*:\s*(?!"\[redacted\]")["[]/i,
  'authorization scheme': /\b(Bearer|DPoP|Basic)\s+[\w.~+/-]{8,}/,
  cookie:
    /\b(_(session|interaction|interaction_resume|state\.[\w-]+)|gatehouse-(session|interaction|resume|login|upstream))(\.legacy)?(\.sig)?=[^;\s"[]/,
}

export interface Finding {
  pattern: string
  /** The line around the match, for the failure message. */
  excerpt: string
}

export function scanForSecrets(lines: readonly string[], secrets: readonly string[] = []): Finding[] {
  const findings: Finding[] = []
  for (const line of lines) {
    for (const [pattern, regex] of Object.entries(PATTERNS)) {
      const match = regex.exec(line)
      if (match) findings.push({ pattern, excerpt: excerpt(line, match.index) })
    }
    for (const secret of secrets) {
      const at = line.indexOf(secret)
      if (at !== -1) findings.push({ pattern: 'a secret value of the test', excerpt: excerpt(line, at) })
    }
  }
  return findings
}

const excerpt = (line: string, at: number) => line.slice(Math.max(0, at - 80), at + 120)
