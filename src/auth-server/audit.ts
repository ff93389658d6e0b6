import type { KoaContextWithOIDC, default as Provider } from 'oidc-provider'
import { StoreUnavailableError } from '../storage/index.ts'
import type { OidcWrite, Store } from '../storage/store.ts'
import type { AuthServerLogger } from './options.ts'

/** Every kind of audit event (docs/storage-schema.md, `audit_events`). */
export type AuditType =
  | 'login.succeeded'
  | 'login.failed'
  | 'login.rate_limited'
  | 'login.upstream_refused'
  | 'login.upstream_failed'
  | 'login.switch_account'
  | 'login.confirmed'
  | 'consent.granted'
  | 'consent.denied'
  | 'consent.revoked'
  | 'token.issued'
  | 'token.refused'
  | 'authorization.refused'
  | 'client.revoked'
  | 'user.created'
  | 'user.disabled'
  | 'user.enabled'
  | 'user.deleted'
  | 'user.password_set'
  | 'key.rotated'
  | 'admin.signed_in'
  | 'admin.refused'
  | 'vault.connected'
  | 'vault.connect_refused'
  | 'vault.disconnected'
  | 'vault.broken'

/** Kept at most this long and this many (a flood of refused requests cannot grow the table without bound). */
export const AUDIT_RETENTION = { seconds: 30 * 86_400, events: 100_000 }
const PRUNE_INTERVAL_SECONDS = 3600
/** A client's last use is written at most this often per process: token requests cost no extra write. */
const USAGE_INTERVAL_SECONDS = 300
const USAGE_MEMORY = 10_000

const nextPrune = new WeakMap<Store, number>()

const now = () => Math.floor(Date.now() / 1000)

/**
 * The one way an audit event is written: appended, and once an hour per store the events past the
 * retention are deleted. `data` never holds a token, secret or password.
 */
export async function recordAudit(store: Store, type: AuditType, data: Record<string, unknown>) {
  await store.audit.append({ at: now(), type, data })
  await pruneWhenDue(store)
}

async function pruneWhenDue(store: Store) {
  const at = now()
  if ((nextPrune.get(store) ?? 0) > at) return
  nextPrune.set(store, at + PRUNE_INTERVAL_SECONDS)
  await store.audit.prune(at - AUDIT_RETENTION.seconds, AUDIT_RETENTION.events)
}

/** The token requests whose `token.issued` event went into the transaction that issued the tokens. */
const issuedInTransaction = new WeakSet<KoaContextWithOIDC>()

function tokenIssued(ctx: KoaContextWithOIDC): Record<string, unknown> {
  const userId = ctx.oidc.entities.Account?.accountId
  return {
    clientId: ctx.oidc.client?.clientId ?? '',
    grantType: ctx.oidc.params?.grant_type,
    ...(userId ? { userId } : {}),
  }
}

/**
 * The `token.issued` event of this token request as a write of the transaction that issues its tokens (a
 * code's redemption, a rotation): written with them, and not again when the request succeeds.
 */
export function tokenIssuedWrite(ctx: KoaContextWithOIDC): OidcWrite {
  issuedInTransaction.add(ctx)
  return { kind: 'audit', event: { at: now(), type: 'token.issued', data: tokenIssued(ctx) } }
}

/**
 * Token issuance and refusals (by their OAuth error code) as audit events, and each client's last use. The
 * provider's events are synchronous: a failed write is logged, never thrown into the request.
 */
export function recordTokenEvents(provider: Provider, store: Store, logger: AuthServerLogger) {
  const written = new Map<string, number>()
  const failed = (error: Error) => {
    // A store outage is reported once, by the outage handler (outage.ts), not once per lost event.
    if (!(error instanceof StoreUnavailableError))
      logger.warn('audit event not written', { error: error.message })
  }
  const touch = async (clientId: string, at: number) => {
    if ((written.get(clientId) ?? 0) > at - USAGE_INTERVAL_SECONDS) return
    if (written.size >= USAGE_MEMORY) written.clear()
    written.set(clientId, at)
    await store.clientUsage.touch(clientId, at)
  }
  provider.on('grant.success', (ctx) => {
    void Promise.all([
      issuedInTransaction.has(ctx)
        ? pruneWhenDue(store)
        : recordAudit(store, 'token.issued', tokenIssued(ctx)),
      touch(ctx.oidc.client?.clientId ?? '', now()),
    ]).catch(failed)
  })
  provider.on('grant.error', (ctx, error) => refused(store, 'token.refused', ctx, error).catch(failed))
  provider.on('authorization.error', (ctx, error) =>
    refused(store, 'authorization.refused', ctx, error).catch(failed),
  )
}

/** The reason is the public error code and its fixed description, never the request's values. */
function refused(
  store: Store,
  type: 'token.refused' | 'authorization.refused',
  ctx: KoaContextWithOIDC,
  error: { error?: string; error_description?: string },
) {
  return recordAudit(store, type, {
    clientId: ctx.oidc?.client?.clientId,
    grantType: ctx.oidc?.params?.grant_type,
    reason: error.error ?? 'server_error',
    description: error.error_description,
  })
}
