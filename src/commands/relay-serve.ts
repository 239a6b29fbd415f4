// `proxyctl relay serve`: validate the config, provision, listen; SIGHUP reloads
// (a bad file is refused and the running config stays); SIGTERM/SIGINT drain.
import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { isProxyctlError } from '../errors.js';
import { tuneHeapForStreaming } from '../heap-tuning.js';
import { createLogger } from '../log.js';
import { nativeReclaimHooks, reclaimSetting } from '../memory-reclaim.js';
import { Relay } from '../relay/relay.js';
import { loadMasterKey } from '../crypto/master-key.js';

import { loadConfigFromOptions, type ServeOptions } from './load-config.js';

export { loadConfigFromOptions, type ServeOptions } from './load-config.js';

export async function serveRelay(opts: ServeOptions): Promise<void> {
  tuneHeapForStreaming();
  const config = loadConfigFromOptions(opts);
  const log = createLogger(config.log.level, 'proxyctl-relay');
  const masterKey = loadMasterKey({ file: config.secrets.masterKeyFile, env: process.env });
  const reclaimTiming = reclaimSetting();
  const hooks = reclaimTiming ? nativeReclaimHooks() : undefined;
  const memoryReclaim = hooks && reclaimTiming ? { hooks, timing: reclaimTiming } : undefined;
  log.debug({ memory_reclaim: !!memoryReclaim }, 'memory reclaim after connection storms');
  const relay = await Relay.create(config, {
    log,
    ...(masterKey ? { masterKey } : {}),
    ...(memoryReclaim ? { memoryReclaim } : {}),
  });
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
    const refused = (err: unknown) =>
      log.error(
        {
          code: isProxyctlError(err) ? err.code : 'ERR_INTERNAL',
          details: isProxyctlError(err) ? err.details : undefined,
        },
        `reload refused, the running configuration stays: ${(err as Error).message}`,
      );
    try {
      const next = loadConfigFromOptions(opts);
      relay.reload(next).then(({ restartNeeded }) => {
        if (restartNeeded.length) log.warn({ keys: restartNeeded }, 'these changes take effect after a restart');
      }, refused);
    } catch (err) {
      refused(err);
    }
  };
  const watcher = opts.config ? watchConfig(opts.config, reload, log) : undefined;
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'relay stopping');
      process.off('SIGHUP', reload);
      watcher?.close();
      relay.close().then(resolve, resolve);
    };
    process.on('SIGHUP', reload);
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

function fileHash(file: string): string {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex');
  } catch {
    return '';
  }
}

/**
 * Reloads when the config file changes. The directory is watched (editors and
 * config management replace files by rename), events are debounced, and an
 * unchanged file does not reload.
 */
function watchConfig(file: string, reload: () => void, log: ReturnType<typeof createLogger>): FSWatcher | undefined {
  const dir = path.dirname(path.resolve(file));
  const base = path.basename(file);
  let timer: NodeJS.Timeout | undefined;
  let seen = fileHash(file);
  try {
    const w = watch(dir, (_event, name) => {
      if (name !== null && name !== base) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        const now = fileHash(file);
        if (!now || now === seen) return;
        seen = now;
        log.info({ config: file }, 'config file changed; reloading');
        reload();
      }, 300);
    });
    w.unref();
    return w;
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot watch the config file; reload with SIGHUP');
    return undefined;
  }
}
