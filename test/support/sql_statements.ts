import { DatabaseSync, StatementSync } from 'node:sqlite'
import pg from 'pg'

/** The SQL text of every statement this process sends while `work` runs, as the drivers receive it. */
export async function statementsOf(work: () => Promise<unknown>): Promise<string[]> {
  const sent: string[] = []
  const restore: (() => void)[] = []
  const spy = <T extends object>(
    proto: T,
    name: keyof T & string,
    sqlOf: (self: T, args: unknown[]) => unknown,
  ) => {
    const original = proto[name] as (...args: unknown[]) => unknown
    Object.defineProperty(proto, name, {
      configurable: true,
      writable: true,
      value(this: T, ...args: unknown[]) {
        sent.push(String(sqlOf(this, args)))
        return original.apply(this, args)
      },
    })
    restore.push(() =>
      Object.defineProperty(proto, name, { value: original, configurable: true, writable: true }),
    )
  }
  for (const name of ['all', 'get', 'run', 'iterate'] as const)
    spy(StatementSync.prototype, name, (statement) => statement.sourceSQL)
  spy(DatabaseSync.prototype, 'exec', (_, [sql]) => sql)
  spy(pg.Client.prototype, 'query', (_, [query]) =>
    typeof query === 'string' ? query : (query as { text: string }).text,
  )
  try {
    await work()
  } finally {
    for (const undo of restore) undo()
  }
  // The once-a-minute deletion of expired rows is housekeeping, not the request's.
  return sent.map((sql) => sql.replace(/\s+/g, ' ').trim()).filter((sql) => !/WHERE expires_at <=/.test(sql))
}
