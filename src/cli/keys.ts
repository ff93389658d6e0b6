import { rotateSigningKey, type SigningAlgorithm } from '../auth-server/index.ts'
import { fail } from '../config/errors.ts'
import { parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'
import { loadSecret } from './embedded_server.ts'

const ALGORITHMS: readonly SigningAlgorithm[] = ['ES256', 'EdDSA', 'RS256']

const HELP = `Usage:
  gatehouse keys rotate [--alg ES256|EdDSA|RS256] [--keep-previous <seconds>]
                     a new signing key becomes active; the previous one stays published (default 1 day,
                     at least the access token lifetime) so its tokens keep verifying. Running servers
                     sign with the new key after their next restart.
  gatehouse keys list  the keys: kid, algorithm, active or retired, created, published until

Options:
${STORE_HELP}`

export async function runKeys(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, {
    alg: { type: 'string', default: 'ES256' },
    'keep-previous': { type: 'string' },
  })
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action === 'rotate') {
    positionals(rest, [], 'gatehouse keys rotate [--alg ES256|EdDSA|RS256]')
    const alg = values.alg as SigningAlgorithm
    if (!ALGORITHMS.includes(alg)) fail(`--alg ${alg} must be one of ${ALGORITHMS.join(', ')}`)
    const keep = values['keep-previous']
    if (keep !== undefined && !/^[1-9]\d*$/.test(keep))
      fail('--keep-previous must be a whole number of seconds')
    await withStore(values, async (store, settings) => {
      const secret = settings.secret ?? (await loadSecret(settings.dataDir, consoleLogger))
      const kid = await rotateSigningKey(store, secret, {
        alg,
        ...(keep ? { keepPreviousForSeconds: Number(keep) } : {}),
      })
      console.log(`new active ${alg} signing key ${kid}; restart gatehouse serve to sign with it`)
    })
    return
  }
  if (action === 'list') {
    positionals(rest, [], 'gatehouse keys list')
    await withStore(values, async (store) => {
      for (const key of await store.keys.list()) {
        const until = key.retireAfter ? new Date(key.retireAfter).toISOString() : '-'
        console.log(
          `${key.kid}\t${key.alg}\t${key.state}\t${new Date(key.createdAt).toISOString()}\t${until}`,
        )
      }
    })
    return
  }
  fail(`unknown action "${action}": gatehouse keys rotate | gatehouse keys list`)
}

const consoleLogger = {
  warn: (message: string) => console.error(`gatehouse: ${message}`),
  info: () => {},
}
