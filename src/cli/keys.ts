import {
  resolveTtl,
  rotateSigningKey,
  type SigningAlgorithm,
  signedTokenLifetimeSeconds,
} from '../auth-server/index.ts'
import { embeddedAuthorizationConfig } from '../config/embedded.ts'
import { parseAdminArgs, positionals, STORE_HELP, withStore } from './data_store.ts'
import { readSecret } from './embedded_server.ts'
import { failWith } from './errors.ts'
import { JSON_HELP, JSON_OPTION, printList } from './output.ts'
import { step } from './style.ts'

const ALGORITHMS: readonly SigningAlgorithm[] = ['ES256', 'EdDSA', 'RS256']

const HELP = `Usage:
  gatehouse keys rotate [--alg ES256|EdDSA|RS256] [--keep-previous <seconds>]
                     a new signing key becomes active; the previous one stays published (default 1 day,
                     never less than the longest token lifetime plus 60 s) so its tokens keep verifying.
                     Running servers sign with the new key after their next restart, and keep the old
                     one published until then. Needs the secret gatehouse serve uses.
  gatehouse keys list  the keys: kid, algorithm, active or retired, created, published until

Options:
  --alg <alg>        the new key's algorithm (default ES256)
  --keep-previous <seconds>
                     how long the previous key stays published
${JSON_HELP}
${STORE_HELP}

Examples:
  gatehouse keys rotate
  gatehouse keys rotate --alg EdDSA --config gatehouse.yaml
  gatehouse keys list --json`

export async function runKeys(argv: string[]): Promise<void> {
  const parsed = parseAdminArgs(argv, HELP, {
    ...JSON_OPTION,
    alg: { type: 'string', default: 'ES256' },
    'keep-previous': { type: 'string' },
  })
  if (!parsed) return
  const { values, action, rest } = parsed
  if (action === 'rotate') {
    positionals(rest, [], 'gatehouse keys rotate [--alg ES256|EdDSA|RS256]')
    const alg = values.alg as SigningAlgorithm
    if (!ALGORITHMS.includes(alg)) failWith('usage', `--alg ${alg} must be one of ${ALGORITHMS.join(', ')}`)
    const keep = values['keep-previous']
    if (keep !== undefined && !/^\d+$/.test(keep))
      failWith('usage', '--keep-previous must be a whole number of seconds')
    await withStore(values, async (store, settings) => {
      // Never generate a secret here: a key encrypted with a secret the server does not have stops its next start.
      const secret =
        settings.secret ??
        (await readSecret(settings.dataDir)) ??
        failWith(
          'secret_missing',
          `no secret: ${settings.dataDir}/secret does not exist; give the GATEHOUSE_SECRET (or the secret in --config) that gatehouse serve uses`,
        )
      const ttl = resolveTtl(embeddedAuthorizationConfig(settings.settings, false).ttl)
      const minimum = signedTokenLifetimeSeconds(ttl)
      step(`generating a new ${alg} signing key and storing it encrypted`)
      const rotation = await rotateSigningKey(store, secret, {
        alg,
        minimumKeepSeconds: minimum,
        ...(keep === undefined ? {} : { keepPreviousForSeconds: Number(keep) }),
      }).catch((error: Error) =>
        failWith('key_rotation_failed', `cannot rotate: ${error.message}`, { cause: error }),
      )
      if (keep !== undefined && Number(keep) < minimum) {
        console.log(
          `--keep-previous ${keep} is shorter than the longest token lifetime (${minimum} s with skew): using ${minimum} s`,
        )
      }
      console.log(`new active ${alg} signing key ${rotation.kid}`)
      for (const key of rotation.retired) {
        console.log(
          `previous ${key.alg} key ${key.kid} stays published until at least ${new Date(rotation.retireAfter).toISOString()}, and while a running server still signs with it`,
        )
      }
      console.log('restart every instance of gatehouse serve to sign with the new key')
    })
    return
  }
  if (action === 'list') {
    positionals(rest, [], 'gatehouse keys list')
    await withStore(values, async (store) => {
      const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString())
      printList(
        await store.keys.list(),
        [
          ['KID', (key) => key.kid],
          ['ALG', (key) => key.alg],
          ['STATE', (key) => key.state],
          ['CREATED', (key) => iso(key.createdAt) ?? '-'],
          ['PUBLISHED_UNTIL', (key) => iso(key.retireAfter) ?? '-'],
        ],
        values.json,
        (key) => ({
          kid: key.kid,
          alg: key.alg,
          state: key.state,
          created_at: iso(key.createdAt),
          published_until: iso(key.retireAfter) ?? null,
        }),
      )
    })
    return
  }
  failWith('usage', `unknown action "${action}": gatehouse keys rotate | gatehouse keys list`)
}
