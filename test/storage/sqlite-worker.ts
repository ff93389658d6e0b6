import { parentPort, workerData } from 'node:worker_threads'
import { openStore } from '../../src/storage/open.ts'

/** One of several threads racing on one SQLite file, each with its own connection (see sqlite.test.ts). */
const { dataDir, go, hits } = workerData as { dataDir: string; go: Int32Array; hits: number }
const store = await openStore(undefined, { dataDir })
parentPort?.postMessage('ready')
Atomics.wait(go, 0, 0)
const consumed = await store
  .oidcAdapter('RefreshToken')
  .consume('raced')
  .then(
    () => true,
    () => false,
  )
const allowed: boolean[] = []
for (let i = 0; i < hits; i++) allowed.push(await store.hit('raced-bucket', 15, 1_000_000_000))
await store.close()
parentPort?.postMessage({ consumed, allowed: allowed.filter(Boolean).length })
