// `proxyctl relay serve`: validate the config, provision, listen; SIGHUP reloads
// (a bad file is refused and the running config stays); SIGTERM/SIGINT drain.
import { defaultRelayConfig, loadRelayConfig, type RelayConfig } from '../config/relay-config.js';
import { isProxyctlError } from '../errors.js';
import { createLogger } from '../log.js';
import { Relay } from '../relay/relay.js';

export interface ServeOptions {
  config?: string;
  dataDir?: string;
}

export function loadConfigFromOptions(opts: ServeOptions): RelayConfig {
  const load = opts.dataDir ? { dataDir: opts.dataDir } : {};
  return opts.config ? { ...loadRelayConfig(opts.config, load), file: opts.config } : defaultRelayConfig(load);
}

export async function serveRelay(opts: ServeOptions): Promise<void> {
  const config = loadConfigFromOptions(opts);
  const log = createLogger(config.log.level, 'proxyctl-relay');
  const relay = await Relay.create(config, { log });
  try {
    await relay.start();
  } catch (err) {
    await relay.close();
    throw err;
  }
  log.info({ config: opts.config ?? '(embedded defaults)', apps: config.apps.length }, 'relay ready');

  const reload = () => {
    if (!opts.config) {
      log.warn('SIGHUP ignored: the relay runs on embedded defaults (no --config)');
      return;
    }
    try {
      const next = loadConfigFromOptions(opts);
      const { restartNeeded } = relay.reload(next);
      if (restartNeeded.length) log.warn({ keys: restartNeeded }, 'these changes take effect after a restart');
    } catch (err) {
      log.error({ code: isProxyctlError(err) ? err.code : 'ERR_INTERNAL', details: isProxyctlError(err) ? err.details : undefined },
        `reload refused, the running configuration stays: ${(err as Error).message}`);
    }
  };
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'relay stopping');
      process.off('SIGHUP', reload);
      relay.close().then(resolve, resolve);
    };
    process.on('SIGHUP', reload);
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
