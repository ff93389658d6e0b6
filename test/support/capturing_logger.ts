import type { GuardLogger } from '../../src/guard/index.ts'

export interface LogEntry {
  level: 'warn' | 'info'
  message: string
  fields: Record<string, unknown> | undefined
}

/** A guard logger that keeps everything, so tests can assert what was (and was not) logged. */
export function capturingLogger(): GuardLogger & { entries: LogEntry[]; text(): string } {
  const entries: LogEntry[] = []
  return {
    entries,
    warn: (message, fields) => entries.push({ level: 'warn', message, fields }),
    info: (message, fields) => entries.push({ level: 'info', message, fields }),
    text: () => JSON.stringify(entries),
  }
}
