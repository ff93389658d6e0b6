import { type DevIdp, type DevIdpOptions, startDevIdp } from '../../src/dev/idp.ts'

export type TestIdp = DevIdp
export type TestIdpOptions = DevIdpOptions

/** The development IdP with the fixed client `test-client` / `test-client-secret`. */
export const startTestIdp = (options: TestIdpOptions): Promise<TestIdp> =>
  startDevIdp({ client: { id: 'test-client', secret: 'test-client-secret' }, ...options })
