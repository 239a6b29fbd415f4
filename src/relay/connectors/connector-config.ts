// What a connector learns when it pulls its configuration: its identity, its
// group's apps and the relay's heartbeat/renewal settings. The version is a
// content hash so connectors can tell a real change from a repeat.
import { createHash } from 'node:crypto';
import type { RelayConfig } from '../../config/relay-config.js';
import type { ConnectorAppConfig, ConnectorConfig } from '../../protocol/connector-api.js';
import type { CertificateRecord, ConnectorRecord } from '../../store/index.js';

export function groupConfigVersion(config: RelayConfig, group: string): string {
  return hash({ settings: settingsOf(config), apps: appsOf(config, group) });
}

export function buildConnectorConfig(
  config: RelayConfig,
  connector: ConnectorRecord,
  cert: CertificateRecord,
): ConnectorConfig {
  return {
    version: groupConfigVersion(config, connector.group),
    connectorId: connector.id,
    name: connector.name,
    group: connector.group,
    ...settingsOf(config),
    certificate: {
      serial: cert.serial,
      issuedAt: new Date(cert.issuedAt).toISOString(),
      notAfter: new Date(cert.notAfter).toISOString(),
    },
    apps: appsOf(config, connector.group),
  };
}

function settingsOf(config: RelayConfig) {
  return {
    relay: { connectorApiUrl: config.connectorApi.url.href },
    channels: config.connectors.channels,
    heartbeatIntervalMs: config.connectors.heartbeatIntervalMs,
    configRefreshMs: config.connectors.configRefreshMs,
    renewAfterMs: config.connectors.renewAfterMs,
  };
}

function appsOf(config: RelayConfig, group: string): ConnectorAppConfig[] {
  return config.apps
    .filter((a) => a.connectorGroup === group)
    .map((a) => ({
      name: a.name,
      internalUrl: a.internalUrl.href,
      externalUrl: a.externalUrl.href,
      backendTimeoutMs: a.backendTimeoutMs,
      passHostHeader: a.passHostHeader,
    }));
}

function hash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('base64url').slice(0, 22);
}
