import { type DestinationStream, type Logger, pino } from 'pino'
import type { GuardLogger } from '../guard/index.ts'

/** Fields that may hold credentials, wherever they appear in a log object. */
const REDACTED = [
  'authorization',
  'cookie',
  'token',
  'accessToken',
  'access_token',
  'refresh_token',
  'client_secret',
  'password',
  'secret',
].flatMap((field) => [
  field,
  `*.${field}`,
  `*.headers.${field}`,
  `headers["set-cookie"]`,
  `*.headers["set-cookie"]`,
])

export function createGatewayLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    { name: 'gatehouse', level, redact: { paths: [...new Set(REDACTED)], censor: '[redacted]' } },
    destination,
  )
}

/** The guard's logger interface on top of pino. */
export const guardLogger = (logger: Logger): GuardLogger => ({
  warn: (message, fields) => logger.warn(fields ?? {}, message),
  info: (message, fields) => logger.info(fields ?? {}, message),
})
