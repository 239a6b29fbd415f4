// `proxyctl relay keys rotate`: a new current session and/or assertion key. A
// running relay picks it up within half a second (it watches the store).
import { rotateKey } from '../crypto/keyring.js';
import { ProxyctlError } from '../errors.js';
import { withStore } from './open-store.js';
import { loadConfigFromOptions, type ServeOptions } from './relay-serve.js';

export async function rotateKeys(opts: ServeOptions & { purpose: string }, out: (line: string) => void): Promise<void> {
  const purposes = opts.purpose === 'all' ? (['session', 'assertion'] as const) : ([opts.purpose] as const);
  for (const p of purposes) {
    if (p !== 'session' && p !== 'assertion')
      throw new ProxyctlError('ERR_USAGE', `--purpose must be session, assertion or all (found ${p})`);
  }
  const config = loadConfigFromOptions(opts);
  const longestSession = Math.max(8 * 3_600_000, ...config.apps.map((a) => a.sessionLifetimeMs));
  await withStore(config, async (store) => {
    for (const p of purposes as readonly ('session' | 'assertion')[]) {
      const kid = await rotateKey(store.keys, p, 'cli', longestSession);
      out(`new ${p} key ${kid}`);
    }
  });
}
