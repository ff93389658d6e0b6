/**
 * The authorization server benchmark's client, run as a child process so the server process's CPU is the
 * server's alone. It drives one flow for the time asked, on a few chains at once, and reports how many it
 * finished. Usage: spawned with an IPC channel; it receives a {@link ClientTask} per round and answers a
 * {@link ClientReport}.
 */
import { createHash, randomBytes } from 'node:crypto'

export type Flow = 'refresh' | 'code redemption' | 'authorize flow'

export interface ClientTask {
  issuer: string
  clientId: string
  resource: string
  scope: string
  flow: Flow
  seconds: number
  chains: number
}

export interface ClientReport {
  ops: number
  /** Answers that were not the expected success: the round is void if there is any. */
  failures: number
  firstFailure?: string
}

const REDIRECT_URI = 'http://127.0.0.1/callback'

/** The redirect URI every benchmark client registers: a loopback callback, as MCP clients use. */
export const BENCH_REDIRECT_URI = REDIRECT_URI

interface Grant {
  code: string
  verifier: string
}

/** The authorization request and its interaction, followed like a browser up to the redirect with the code. */
async function authorize(task: ClientTask): Promise<Grant> {
  const verifier = randomBytes(32).toString('base64url')
  const url = new URL(`${task.issuer}/authorize`)
  for (const [key, value] of Object.entries({
    client_id: task.clientId,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: task.scope,
    resource: task.resource,
    state: randomBytes(8).toString('hex'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }))
    url.searchParams.set(key, value)
  const cookies = new Map<string, string>()
  let next = url.href
  for (let hop = 0; hop < 12; hop++) {
    const response = await fetch(next, {
      redirect: 'manual',
      headers: { cookie: [...cookies].map(([name, value]) => `${name}=${value}`).join('; ') },
    })
    for (const cookie of response.headers.getSetCookie()) {
      const pair = cookie.split(';', 1)[0] ?? ''
      const at = pair.indexOf('=')
      cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim())
    }
    const body = await response.text()
    const location = response.headers.get('location')
    if (!location)
      throw new Error(
        `authorization stopped with ${response.status}: ${body
          .replace(/<[^>]*>/g, ' ')
          .replace(/\s+/g, ' ')
          .slice(-300)}`,
      )
    const target = new URL(location, next)
    if (target.href.startsWith(REDIRECT_URI)) {
      const code = target.searchParams.get('code')
      if (!code) throw new Error(`no code: ${target.search}`)
      return { code, verifier }
    }
    next = target.href
  }
  throw new Error('too many redirects')
}

async function tokenRequest(
  task: ClientTask,
  params: Record<string, string>,
): Promise<Record<string, string>> {
  const response = await fetch(`${task.issuer}/token`, {
    method: 'POST',
    body: new URLSearchParams({ client_id: task.clientId, ...params }),
  })
  const body = (await response.json()) as Record<string, string>
  if (response.status !== 200) throw new Error(`token endpoint: ${response.status} ${JSON.stringify(body)}`)
  return body
}

const redeem = (task: ClientTask, { code, verifier }: Grant) =>
  tokenRequest(task, {
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: REDIRECT_URI,
    resource: task.resource,
  })

/**
 * One chain of the flow, as a step that answers whether it did one. The work before the clock starts (codes
 * to redeem, a refresh token) is done here, outside the measured window. A chain out of codes stops early: the
 * server then idles, which costs no CPU, so CPU per operation stays right.
 */
async function chainFor(task: ClientTask, codes: number): Promise<() => Promise<boolean>> {
  if (task.flow === 'authorize flow') {
    return async () => {
      await authorize(task)
      return true
    }
  }
  if (task.flow === 'code redemption') {
    const grants: Grant[] = []
    for (let i = 0; i < codes; i++) grants.push(await authorize(task))
    return async () => {
      const grant = grants.pop()
      if (grant) await redeem(task, grant)
      return grant !== undefined
    }
  }
  let refreshToken = (await redeem(task, await authorize(task))).refresh_token as string
  return async () => {
    const body = await tokenRequest(task, {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      resource: task.resource,
    })
    refreshToken = body.refresh_token ?? refreshToken
    return true
  }
}

/** Codes each chain prepares per second of round, at a rate above what this machine redeems. */
const CODES_PER_SECOND = 150

async function run(task: ClientTask): Promise<ClientReport> {
  const codes = Math.ceil((CODES_PER_SECOND * task.seconds) / task.chains)
  const steps = await Promise.all(Array.from({ length: task.chains }, () => chainFor(task, codes)))
  process.send?.('measuring')
  let ops = 0
  let failures = 0
  let firstFailure: string | undefined
  const end = performance.now() + task.seconds * 1000
  await Promise.all(
    steps.map(async (step) => {
      while (performance.now() < end) {
        try {
          if (!(await step())) return
          ops++
        } catch (error) {
          failures++
          firstFailure ??= (error as Error).message
          if (failures > 20) return
        }
      }
    }),
  )
  return { ops, failures, ...(firstFailure === undefined ? {} : { firstFailure }) }
}

if (process.send) {
  process.on('message', (task: ClientTask | 'exit') => {
    if (task === 'exit') process.exit(0)
    run(task).then(
      (report) => process.send?.(report),
      (error: Error) => process.send?.({ ops: 0, failures: 1, firstFailure: error.message }),
    )
  })
}
