// The relay configuration a command works with: --config (validated as `relay serve`
// does) or the embedded defaults, with --data-dir over dataDir. Kept apart from
// relay-serve.ts so that commands reading the store do not load the relay itself.
import { defaultRelayConfig, loadRelayConfig, type RelayConfig } from '../config/relay-config.js';

export interface ServeOptions {
  config?: string;
  dataDir?: string;
}

export function loadConfigFromOptions(opts: ServeOptions): RelayConfig {
  const load = opts.dataDir ? { dataDir: opts.dataDir } : {};
  return opts.config ? { ...loadRelayConfig(opts.config, load), file: opts.config } : defaultRelayConfig(load);
}
