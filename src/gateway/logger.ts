import { type DestinationStream, type Logger, pino } from 'pino'
import type { GuardLogger } from '../guard/index.ts'

/** Fields that may hold credentials, at the top of a log object or one level down. */
const FIELDS = [
  'authorization',
  'cookie',
  'token',
  'accessToken',
  'access_token',
  'refresh_token',
  'id_token',
  'client_secret',
  'password',
  'secret',
]
/** Request and response headers that carry credentials: bearer and DPoP tokens, proofs, session cookies. */
const HEADERS = ['authorization', 'proxy-authorization', 'dpop', 'cookie', 'set-cookie']
const REDACTED = [
  ...FIELDS.flatMap((field) => [field, `*.${field}`]),
  ...HEADERS.flatMap((header) => [`headers["${header}"]`, `*.headers["${header}"]`]),
]

/**
 * A request target for the log with every query value replaced: a query may carry an access token
 * (`?access_token=`, refused but still received), an authorization code and state (the sign-in callbacks),
 * or anything else a client put there.
 */
export function redactUrl(url: string | undefined): string | undefined {
  const queryAt = url?.indexOf('?') ?? -1
  if (url === undefined || queryAt === -1) return url
  const query = url
    .slice(queryAt + 1)
    .split('&')
    .map((pair) => `${pair.split('=', 1)[0]}=[redacted]`)
    .join('&')
  return `${url.slice(0, queryAt)}?${query}`
}

export function createGatewayLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ name: 'gatehouse', level, redact: { paths: REDACTED, censor: '[redacted]' } }, destination)
}

/** The guard's logger interface on top of pino. */
export const guardLogger = (logger: Logger): GuardLogger => ({
  warn: (message, fields) => logger.warn(fields ?? {}, message),
  info: (message, fields) => logger.info(fields ?? {}, message),
})
