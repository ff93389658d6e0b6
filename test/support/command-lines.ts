/**
 * The `gatehouse` command lines written for people (the guides' shell blocks, the examples of `--help`),
 * found the way a shell would split them, and checked by the real command's argument parser.
 */

export interface CommandLine {
  /** The line as written, for the failure message. */
  text: string
  /** The arguments after `gatehouse` (or `npx mcp-gatehouse`, `npx -p … gatehouse`). */
  args: string[]
}

/** A shell word list: quotes removed, `$VAR` kept as written, comments dropped; operators as their own words. */
function words(line: string): string[] {
  const out: string[] = []
  let word: string | undefined
  const push = () => {
    if (word !== undefined) out.push(word)
    word = undefined
  }
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string
    if (c === "'" || c === '"') {
      const end = line.indexOf(c, i + 1)
      if (end === -1) throw new Error(`unclosed ${c} in: ${line}`)
      word = (word ?? '') + line.slice(i + 1, end)
      i = end
    } else if (c === '#' && word === undefined) break
    else if (/\s/.test(c)) push()
    else if ('|&;'.includes(c)) {
      push()
      const twin = line[i + 1] === c && c !== ';'
      out.push(twin ? c + c : c)
      if (twin) i++
    } else word = (word ?? '') + c
  }
  push()
  return out
}

const OPERATORS = new Set(['|', '||', '&&', ';', '&'])

/** The arguments of a gatehouse invocation in one simple command, or undefined for any other program. */
function gatehouseArgs(command: string[]): string[] | undefined {
  let rest = command
  while (rest[0] && /^[A-Za-z_][A-Za-z0-9_]*=/.test(rest[0])) rest = rest.slice(1)
  if (rest[0] === 'gatehouse') return rest.slice(1)
  if (rest[0] !== 'npx') return undefined
  rest = rest.slice(1)
  while (rest[0]?.startsWith('-')) rest = rest.slice(rest[0] === '-p' || rest[0] === '--package' ? 2 : 1)
  return rest[0] === 'mcp-gatehouse' || rest[0] === 'gatehouse' ? rest.slice(1) : undefined
}

/** Every gatehouse command line of a shell text: continuations joined, pipelines and lists split. */
export function gatehouseCommandLines(shell: string): CommandLine[] {
  const found: CommandLine[] = []
  for (const text of shell.replace(/\\\n\s*/g, ' ').split('\n')) {
    let command: string[] = []
    let redirected = false
    for (const word of [...words(text), ';']) {
      // A redirection and its file are the shell's, not the command's: `< password.txt`, `> out.json`.
      if (/^\d*[<>]{1,2}$/.test(word)) {
        redirected = true
        continue
      }
      if (redirected) {
        redirected = false
        continue
      }
      if (!OPERATORS.has(word)) {
        command.push(word)
        continue
      }
      const args = gatehouseArgs(command)
      if (args) found.push({ text: text.trim(), args })
      command = []
    }
  }
  return found
}

/**
 * Runs `gatehouse <args>` in this process (a child would cost seconds each on a loaded machine) and returns
 * its exit status and everything it printed on stdout and stderr.
 */
export async function runGatehouse(args: string[]): Promise<{ code: number; out: string }> {
  const { run } = await import('../../src/cli/main.ts')
  let out = ''
  const capture = (chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString()
    return true
  }
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write }
  const exitCode = process.exitCode
  process.exitCode = undefined
  process.stdout.write = capture as typeof process.stdout.write
  process.stderr.write = capture as typeof process.stderr.write
  try {
    await run(args)
    return { code: Number(process.exitCode ?? 0), out }
  } finally {
    process.stdout.write = writes.stdout
    process.stderr.write = writes.stderr
    process.exitCode = exitCode
  }
}

/**
 * Runs the command line with `--help` added (before a `--`, whose words belong to the stdio server): node's
 * parser then checks the command, its subcommand's existence and every option name and value kind, and
 * nothing else runs.
 */
export function parseWithHelp(args: string[]): Promise<{ code: number; out: string }> {
  const separator = args.indexOf('--')
  return runGatehouse(
    separator === -1
      ? [...args, '--help']
      : [...args.slice(0, separator), '--help', ...args.slice(separator)],
  )
}
