import { writeFile } from 'node:fs/promises'
import { COMMAND_LINE, type SettingDoc, type SettingEntry, settingsOf, settingsSchema } from './schema.ts'

/**
 * The settings' documentation, generated from the schema: the settings part of `gatehouse serve --help` and
 * docs/configuration.md (`npm run docs:config` writes it; a test fails when it is not what this generates).
 */

const WIDTH = 100

const entries = (): SettingEntry[] =>
  [...settingsOf(settingsSchema)].filter((entry): entry is SettingEntry => entry.doc !== undefined)

function defaultOf(entry: SettingEntry): string | undefined {
  if (entry.doc.defaultText !== undefined) return entry.doc.defaultText
  const value = entry.default
  if (value === undefined) return undefined
  if (typeof value === 'string') return value
  return JSON.stringify(value).replaceAll(',', ', ')
}

const sources = (doc: SettingDoc) =>
  [doc.flag, doc.env && (doc.list ? `${doc.env} (comma-separated)` : doc.env)].filter(Boolean).join(', ')

function wrap(text: string, indent: string): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(' ')) {
    if (line && indent.length + line.length + word.length + 1 > WIDTH) {
      lines.push(indent + line)
      line = word
    } else line = line ? `${line} ${word}` : word
  }
  if (line) lines.push(indent + line)
  return lines
}

/** The file's settings as an outline of its YAML: each key with its default, flag and variable, then what it does. */
export function settingsHelp(): string {
  const lines: string[] = []
  const printed = new Set<string>()
  for (const entry of entries()) {
    entry.path.forEach((part, depth) => {
      const key = entry.path.slice(0, depth + 1).join('.')
      if (printed.has(key)) return
      printed.add(key)
      const indent = '  '.repeat(depth + 1)
      const isEntry = depth === entry.path.length - 1
      if (!isEntry) {
        lines.push(`${indent}${part}:`)
        return
      }
      const value = defaultOf(entry)
      const shown = entry.doc.defaultText === undefined ? value : `(${value})`
      const head = `${indent}${part}:${shown === undefined ? '' : ` ${shown}`}`
      const from = sources(entry.doc)
      if (!from) lines.push(head)
      else if (head.length < 40) lines.push(`${head.padEnd(40)} ${from}`)
      else lines.push(head, `${indent}    ${from}`)
      lines.push(...wrap(entry.doc.description, `${indent}    `))
    })
  }
  const commandLine = COMMAND_LINE.flatMap((doc) => [
    `  ${`${doc.flag}${doc.env ? `, ${doc.env}` : ''}`}`,
    ...wrap(doc.description, '      '),
  ])
  return `Command line:
${commandLine.join('\n')}

Settings: the YAML file's keys (Apollo MCP Server's transport block is accepted as it is), each with its
default, then the flag and the environment variable that give it instead; a flag wins over its variable,
which wins over the file. A key the file does not know stops the start.
${lines.join('\n')}
`
}

const cell = (text: string | undefined) => (text ? text.replaceAll('|', '\\|') : '')

/** docs/configuration.md. */
export function configurationMarkdown(): string {
  const rows = entries().map((entry) => {
    const key = entry.path.join('.').replaceAll('.[]', '[]')
    const value = defaultOf(entry)
    return `| \`${key}\` | ${cell(entry.doc.flag && `\`${entry.doc.flag}\``)} | ${cell(entry.doc.env && `\`${entry.doc.env}\`${entry.doc.list ? ' (comma-separated)' : ''}`)} | ${value === undefined ? '' : `\`${cell(value)}\``} | ${cell(entry.doc.description)} |`
  })
  const commandLine = COMMAND_LINE.map(
    (doc) => `| \`${doc.flag}\` | ${doc.env ? `\`${doc.env}\`` : ''} | ${cell(doc.description)} |`,
  )
  return `# Configuration of \`gatehouse serve\`

Generated from the schema in \`src/config/schema.ts\` by \`npm run docs:config\`; a test fails when this page
and the schema differ. \`gatehouse serve --help\` prints the same settings.

Each setting is read from its flag, else its environment variable, else the YAML file (\`--config\`,
\`GATEHOUSE_CONFIG\`), else its default. Every block of the file is strict: a key it does not know stops the
start with a message naming the key and the keys that block knows. Apollo MCP Server's \`transport\` block
(\`transport.auth\` included) is accepted as it is. Key paths: \`<name>\` is any name (a tool's), \`[]\` an
entry of a list.

## Command line only

| Flag | Variable | Description |
| --- | --- | --- |
${commandLine.join('\n')}

## Settings

| Key | Flag | Variable | Default | Description |
| --- | --- | --- | --- | --- |
${rows.join('\n')}
`
}

if (import.meta.main) {
  await writeFile(new URL('../../docs/configuration.md', import.meta.url), configurationMarkdown())
}
