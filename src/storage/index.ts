export { openStore } from './open.ts'
export { OidcConsumeConflictError, StoreUnavailableError } from './sql_store.ts'
export type * from './store.ts'
export { AmbiguousUsernameError, normalizeUsername } from './store.ts'
