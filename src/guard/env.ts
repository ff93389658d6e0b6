import { GuardError } from './errors.ts'
import type { GuardOptions } from './options.ts'

/**
 * Guard options from the environment, as the product promises: `OAUTH_ISSUER_URL` (required),
 * `OAUTH_AUDIENCE` (optional, comma-separated) and `OAUTH_ACCEPT_PLAIN_JWT` (`true` or `false`, default
 * false: accept `typ: JWT` tokens of any accepted audience, not only those naming the resource). `resource`
 * is the canonical MCP URL, which the environment cannot know; when `OAUTH_AUDIENCE` is unset it is also the
 * only accepted audience.
 */
export function guardOptionsFromEnv(env: Record<string, string | undefined>, resource: string): GuardOptions {
  const issuer = env.OAUTH_ISSUER_URL?.trim()
  if (!issuer) {
    throw new GuardError(
      'config_invalid',
      'OAUTH_ISSUER_URL is not set: set it to your identity provider issuer, e.g. https://your-tenant.auth0.com/',
    )
  }
  const audiences = env.OAUTH_AUDIENCE?.split(',')
    .map((a) => a.trim())
    .filter(Boolean)
  const plain = env.OAUTH_ACCEPT_PLAIN_JWT?.trim().toLowerCase()
  if (plain !== undefined && plain !== '' && plain !== 'true' && plain !== 'false') {
    throw new GuardError(
      'config_invalid',
      `OAUTH_ACCEPT_PLAIN_JWT is ${JSON.stringify(env.OAUTH_ACCEPT_PLAIN_JWT)}: set it to true or false`,
    )
  }
  return {
    resource,
    authorizationServers: [{ issuer, ...(plain === 'true' ? { acceptPlainJwt: true } : {}) }],
    ...(audiences?.length ? { audiences } : {}),
  }
}
