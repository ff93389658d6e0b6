import { readFileSync } from 'node:fs'

/** One `## \`code\`` section of docs/errors.md, its fields as written. */
export interface DocumentedError {
  code: string
  status: number | undefined
  /** `- OAuth error:` (the guard's): `undefined` for none. */
  error: string | undefined
  /** `- JSON-RPC code:` (the gateway's). */
  rpc: number | undefined
  description: string | undefined
  when: boolean
  check: boolean
}

const page = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')

/** The codes documented under the top-level heading `# <title>` of docs/errors.md, in page order. */
export function documentedErrors(title: string): DocumentedError[] {
  const part = page.split(/^# /m).find((text) => text.startsWith(`${title}\n`)) ?? ''
  return part
    .split(/^## /m)
    .slice(1)
    .map((section) => {
      const field = (pattern: RegExp) => pattern.exec(section)?.[1]
      const error = field(/^- OAuth error: (none|`[a-z_]+`)$/m)
      const status = field(/^- Status: (\d{3})$/m)
      const rpc = field(/^- JSON-RPC code: (-\d+)$/m)
      return {
        code: field(/^`([a-z_]+)`\n/) ?? section.split('\n', 1)[0] ?? '',
        status: status === undefined ? undefined : Number(status),
        error: error === 'none' ? undefined : error?.slice(1, -1),
        rpc: rpc === undefined ? undefined : Number(rpc),
        description: field(/^- Description: `(.+)`$/m),
        when: /^\*\*When:\*\* \S/m.test(section),
        check: /^\*\*Check:\*\* \S/m.test(section),
      }
    })
}
