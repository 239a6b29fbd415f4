// The issues a relay configuration is refused with (ERR_CONFIG_INVALID), none when it parses.
import { parseRelayConfig } from '../../src/config/relay-config.js';
import { isProxyctlError } from '../../src/errors.js';

export interface ConfigIssue {
  path: string;
  found: string;
  expected: string;
}

export function configIssues(text: string, file = 'relay.yaml'): ConfigIssue[] {
  try {
    parseRelayConfig(text, file);
  } catch (err) {
    if (isProxyctlError(err, 'ERR_CONFIG_INVALID')) return (err.details?.['issues'] ?? []) as ConfigIssue[];
    throw err;
  }
  return [];
}
