import type { Store } from '../storage/store.ts'

/** One user's authorization of one client: the remembered consent and the live grants under it. */
export interface GrantView {
  userId: string
  username: string | undefined
  clientId: string
  scopes: string[]
  consentedAt: number | undefined
  grants: number
}

/** The consents and the live grants of every user, by user and client, filtered. */
export async function listGrants(
  store: Store,
  filter: { userId?: string; clientId?: string },
): Promise<GrantView[]> {
  const users = await store.users.list()
  const views = new Map<string, GrantView>()
  const view = (userId: string, clientId: string) => {
    const key = JSON.stringify([userId, clientId])
    const found = views.get(key)
    if (found) return found
    const username = users.find((user) => user.id === userId)?.username
    const created: GrantView = { userId, username, clientId, scopes: [], consentedAt: undefined, grants: 0 }
    views.set(key, created)
    return created
  }
  for (const user of users) {
    for (const consent of await store.consents.listByUser(user.id)) {
      const entry = view(user.id, consent.clientId)
      entry.scopes = [...new Set(Object.values(consent.resources).flat())].sort()
      entry.consentedAt = consent.grantedAt
    }
  }
  for (const grant of await store.listOidcRecords('Grant'))
    view(String(grant.accountId), String(grant.clientId)).grants++
  return [...views.values()].filter(
    (entry) =>
      (filter.userId === undefined || entry.userId === filter.userId) &&
      (filter.clientId === undefined || entry.clientId === filter.clientId),
  )
}
