/** `--json`, taken by every list and show: the output for scripts instead of the table for people. */
export const JSON_OPTION = { json: { type: 'boolean' } } as const

export const JSON_HELP =
  '  --json             list and show print JSON (one array or object) instead of a table'

/** One column of a table: its header and the cell of an item. */
export type Column<T> = readonly [header: string, cell: (item: T) => string]

/**
 * Prints `items` as a table with aligned columns under a header (no colour: the output is often piped), or
 * with `json` as one JSON array of `toJson(item)`, the stable form for scripts.
 */
export function printList<T>(
  items: readonly T[],
  columns: readonly Column<T>[],
  json: boolean | undefined,
  toJson: (item: T) => unknown,
): void {
  if (json) {
    console.log(JSON.stringify(items.map(toJson), null, 2))
    return
  }
  const rows = [
    columns.map(([header]) => header),
    ...items.map((item) => columns.map(([, cell]) => cell(item))),
  ]
  const widths = columns.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)))
  for (const row of rows)
    console.log(
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
}

/** Prints one record as `name: value` lines, or with `json` as a JSON object. */
export function printRecord(record: Record<string, unknown>, json: boolean | undefined): void {
  if (json) {
    console.log(JSON.stringify(record, null, 2))
    return
  }
  const width = Math.max(...Object.keys(record).map((name) => name.length))
  for (const [name, value] of Object.entries(record)) {
    const text = typeof value === 'string' ? value : JSON.stringify(value)
    console.log(`${`${name}:`.padEnd(width + 1)} ${text}`)
  }
}

/** A time in seconds since the epoch as an ISO date, `-` when there is none. */
export const isoSeconds = (seconds: number | undefined): string =>
  seconds === undefined ? '-' : new Date(seconds * 1000).toISOString()
