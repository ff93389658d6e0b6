/** The in-memory adapter module of `oidc-provider`, which the package ships without types. */
declare module 'oidc-provider/lib/adapters/memory_adapter.js' {
  import type { Adapter } from 'oidc-provider'
  /** The provider's own in-memory adapter over `store` (by default an LRU of 1,000 entries per provider). */
  export default class MemoryAdapter implements Adapter {
    constructor(model: string, store: Map<string, unknown>)
    upsert: Adapter['upsert']
    find: Adapter['find']
    findByUserCode: Adapter['findByUserCode']
    findByUid: Adapter['findByUid']
    consume: Adapter['consume']
    destroy: Adapter['destroy']
    revokeByGrantId: Adapter['revokeByGrantId']
  }
}
