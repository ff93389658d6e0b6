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
