/**
 * The one error model of Gatehouse outside the guard (which keeps its own `GuardError`, since it depends on
 * nothing of ours). Each part declares a closed registry of stable codes with {@link defineErrors}: per code,
 * the HTTP status and the public text, plus whatever else that part answers with (an OAuth `error`, a page
 * title, a JSON-RPC code). An error carries one code and a `detail` with the specific values, for the
 * operator. `docs/errors.md` documents every registry; `test/errors.test.ts` keeps them from drifting.
 */

export interface ErrorEntry {
  /** The HTTP status when the error answers a request; 500 for errors raised at start or by a command. */
  readonly status: number
  /** The public text: what a client or a page may be told. It never holds values specific to one request. */
  readonly description: string
}

export type Registry = Readonly<Record<string, ErrorEntry>>

/** One part's registry, named after the part (`config`, `auth-server`, `cli`, `gateway`). */
export interface ErrorSet<R extends Registry = Registry> {
  readonly part: string
  readonly registry: R
}

export const defineErrors = <const R extends Registry>(part: string, registry: R): ErrorSet<R> => ({
  part,
  registry,
})

/**
 * The base of every registry error. `code` is stable, for scripts and tests; `message` is for people: the
 * `detail` when there is one (it names the value and the fix), else the public text; `publicDescription` is
 * what may go on the wire. Each part subclasses it once, fixing its {@link ErrorSet}.
 */
export class GatehouseError<R extends Registry = Registry> extends Error {
  override name = 'GatehouseError'
  readonly part: string
  readonly code: keyof R & string
  /** Specific context (setting, value, URL) for the operator and the logs. Never a secret or a token. */
  readonly detail: string
  readonly #entry: R[keyof R & string]

  constructor(set: ErrorSet<R>, code: keyof R & string, detail?: string, options?: ErrorOptions) {
    const entry = set.registry[code] as R[keyof R & string]
    super(detail || entry.description, options)
    this.part = set.part
    this.code = code
    this.detail = detail ?? ''
    this.#entry = entry
  }

  /** The registry entry of this error's code, with the part's own fields. */
  get entry(): R[keyof R & string] {
    return this.#entry
  }

  get status(): number {
    return this.#entry.status
  }

  get publicDescription(): string {
    return this.#entry.description
  }
}

export const isGatehouseError = (value: unknown): value is GatehouseError => value instanceof GatehouseError
