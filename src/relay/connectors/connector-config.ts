// What a connector learns when it pulls its configuration: its identity, its
// group's apps, the relay's heartbeat/renewal settings and the live replicas. The
// version is a content hash so connectors can tell a real change from a repeat.
import { createHash } from 'node:crypto';
import type { RelayConfig } from '../../config/relay-config.js';
import type { ConnectorAppConfig, ConnectorConfig, ReplicaInfo } from '../../protocol/connector-api.js';
import type { CertificateRecord, ConnectorRecord } from '../../store/index.js';

/** The same for every replica given the same set (`relay`, the answering replica's own URL, is left out). */
export function groupConfigVersion(config: RelayConfig, group: string, replicas: readonly ReplicaInfo[]): string {
  const { relay: _answering, ...settings } = settingsOf(config);
  return hash({ settings, apps: appsOf(config, group), replicas: sortedReplicas(replicas) });
}

export function buildConnectorConfig(
  config: RelayConfig,
  connector: ConnectorRecord,
  cert: CertificateRecord,
  replicas: readonly ReplicaInfo[],
): ConnectorConfig {
  return {
    version: groupConfigVersion(config, connector.group, replicas),
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
    replicas: sortedReplicas(replicas),
  };
}

/** Sorted by id whatever order the registry keeps, so equal sets hash and read alike. */
function sortedReplicas(replicas: readonly ReplicaInfo[]): ReplicaInfo[] {
  return replicas.map(({ id, url }) => ({ id, url })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
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
      backendProtocol: a.backendProtocol,
    }));
}

function hash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('base64url').slice(0, 22);
}
