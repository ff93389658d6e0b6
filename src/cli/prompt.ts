import { createInterface } from 'node:readline/promises'
import { CliError, failWith } from './errors.ts'

/**
 * A secret from stdin: piped (the first line), or typed on a terminal without echo, twice so a typo does not
 * lock the account out.
 */
export async function readSecretInput(question: string): Promise<string> {
  if (!process.stdin.isTTY) {
    let input = ''
    for await (const chunk of process.stdin) input += chunk
    return input.split(/\r?\n/)[0] ?? ''
  }
  const first = await typeHidden(question)
  if ((await typeHidden('Again: ')) !== first) failWith('input_mismatch', 'the two passwords differ')
  return first
}

function typeHidden(question: string): Promise<string> {
  const stdin = process.stdin
  process.stderr.write(question)
  stdin.setRawMode(true)
  stdin.setEncoding('utf8')
  stdin.resume()
  let typed = ''
  return new Promise((resolve, reject) => {
    const done = (finish: () => void) => {
      stdin.off('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      process.stderr.write('\n')
      finish()
    }
    const onData = (keys: string) => {
      for (const key of keys) {
        if (key === '\r' || key === '\n') return done(() => resolve(typed))
        if (key === '\u0003') return done(() => reject(new CliError('input_cancelled', 'cancelled')))
        if (key === '\u007f' || key === '\b') typed = typed.slice(0, -1)
        else typed += key
      }
    }
    stdin.on('data', onData)
  })
}

/** Asks one question on the terminal and returns the line typed, trimmed. */
export type Ask = (question: string) => Promise<string>

/** Lends `use` an {@link Ask} on the terminal (questions on stderr, so stdout stays the command's); Ctrl-C cancels. */
export async function withQuestions<T>(use: (ask: Ask) => Promise<T>): Promise<T> {
  const lines = createInterface({ input: process.stdin, output: process.stderr })
  const cancel = new AbortController()
  lines.on('SIGINT', () => cancel.abort())
  try {
    return await use(async (question) => {
      try {
        return (await lines.question(question, { signal: cancel.signal })).trim()
      } catch (error) {
        // Ctrl-C (our abort) or Ctrl-D (readline's own).
        if ((error as { code?: string }).code === 'ABORT_ERR')
          throw new CliError('input_cancelled', 'cancelled')
        throw error
      }
    })
  } finally {
    lines.close()
  }
}
