import { styleText } from 'node:util'

/**
 * How the commands look on a terminal, and only there: colour for what a person reads, never for what a script
 * reads. Every command styles through {@link painter} and reports progress through {@link step}, so the rules
 * below hold everywhere:
 * - `FORCE_COLOR` set to anything but `0` or `false` colours even a pipe (CI logs); `0`/`false` forbid it;
 * - otherwise a non-empty `NO_COLOR` forbids it (https://no-color.org), and so does `TERM=dumb`;
 * - otherwise only a terminal is coloured;
 * - `--json` output and tables are never styled: a command passes them through no painter.
 */

type Env = Record<string, string | undefined>

/** Whether text written to `stream` may carry colour, by the rules above. */
export function colourEnabled(stream: { isTTY?: boolean }, env: Env = process.env): boolean {
  const force = env.FORCE_COLOR
  if (force !== undefined) return force !== '0' && force !== 'false'
  if (env.NO_COLOR) return false
  if (env.TERM === 'dumb') return false
  return stream.isTTY === true
}

/** What a styled piece of text means; the colour follows from it. */
export type Tone = 'pass' | 'fail' | 'warn' | 'quiet' | 'strong'

const FORMATS: Record<Tone, Parameters<typeof styleText>[0]> = {
  pass: 'green',
  fail: 'red',
  warn: 'yellow',
  quiet: 'dim',
  strong: 'bold',
}

export type Paint = (tone: Tone, text: string) => string

/** Styles text bound for `stream`: the colour of its tone, or the text unchanged when colour is off there. */
export function painter(stream: { isTTY?: boolean } = process.stdout, env: Env = process.env): Paint {
  if (!colourEnabled(stream, env)) return (_tone, text) => text
  return (tone, text) => styleText(FORMATS[tone], text, { validateStream: false })
}

/**
 * One line of progress on stderr, written before a step that takes a while (a key generated, a process
 * run), so stdout keeps only the result and a person sees what is happening.
 */
export function step(text: string): void {
  process.stderr.write(`${painter(process.stderr)('quiet', `… ${text}`)}\n`)
}
