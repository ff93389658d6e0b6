import { GuardError } from './errors.ts'
import type { GuardOptions } from './options.ts'

/**
 * Guard options from the environment, as the product promises: `OAUTH_ISSUER_URL` (required) and
 * `OAUTH_AUDIENCE` (optional, comma-separated). `resource` is the canonical MCP URL, which the environment
 * cannot know; when `OAUTH_AUDIENCE` is unset it is also the only accepted audience.
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
  return {
    resource,
    authorizationServers: [{ issuer }],
    ...(audiences?.length ? { audiences } : {}),
  }
}
