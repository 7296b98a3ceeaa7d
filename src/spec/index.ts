// Public surface of src/spec: the cluster spec and the agent config, validated with file:line:col errors.
export { formatSpecError, sortSpecErrors } from './spec-error.js';
export type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
export {
  CLUSTER_KINDS,
  defaultClusterSpec,
  ETCD_MEMBER_COUNTS,
  LOCAL_POSTGRES_VERSION,
  MAX_LOCAL_MEMBERS,
  MAX_ROUTER_REPLICAS,
  noticesForController,
  parseClusterSpec,
  RECOMMENDED_API_VERSION,
} from './cluster-spec.js';
export type { ClusterKind, ClusterMember, ClusterSpec, ParseClusterSpecResult } from './cluster-spec.js';
export type { BackupRepoSpec, BackupsSpec } from './backups-reader.js';
export { dataSourceSite, type ClusterDataSourceSpec, type DataSourceSpec, type RepositoryDataSourceSpec } from './data-source-reader.js';
export {
  AGENT_CONFIG_ENV,
  AGENT_CONFIG_TABLE,
  AGENT_SETTINGS,
  DEFAULT_PG_BIN_DIR,
  DEFAULT_PG_LISTEN,
  DEFAULT_RESTAPI_LISTEN,
  defaultRunAsUser,
  ENVIRONMENT,
  formatHostPort,
  LOG_LEVELS,
  parseAgentConfig,
  parseHostPort,
  readAgentSettings,
  stringifyAgentConfig,
  withRunAsUserDefault,
} from './agent-config.js';
export type {
  AgentConfig,
  AgentSettingKey,
  AgentSettings,
  AgentSettingsInput,
  AgentTags,
  Credentials,
  HostPort,
  LogLevel,
  ParseAgentConfigOptions,
  ParseAgentConfigResult,
  PasswordFileReader,
  ReadAgentSettingsResult,
} from './agent-config.js';
export { dnsLabelProblem, MAX_NAME_LENGTH } from './dns-label.js';
export { loadAgentConfig, loadClusterSpec, loadNodeConfig, loadNodesFile, loadRouterConfig } from './load-spec-files.js';
export { NODE_CONFIG_DEFAULTS, parseNodeConfig } from './node-config.js';
export type { NodeConfig, ParseNodeConfigResult } from './node-config.js';
export { parseNodesFile } from './nodes-file.js';
export type { NodesFile, ParseNodesFileResult } from './nodes-file.js';
export { parseRouterConfig, ROUTER_CONFIG_ENV, ROUTER_CONFIG_TABLE, ROUTER_DEFAULTS, ROUTER_SETTINGS, routerSettings, stringifyRouterConfig } from './router-config.js';
export type { ParseRouterConfigResult, RouterConfig, RouterSettingKey, RouterSettings } from './router-config.js';
export { readSettings, renderSettingsTable, stringifySettings } from './settings-table.js';
export type { ReadSettingsResult, SettingSpec, SettingsTable, SettingType } from './settings-table.js';
export { validateDynamicConfig } from './dynamic-config-validate.js';
