// Public surface of src/router: the pure route table, the TCP router, its admin API, the
// switchover pause protocol and the HAProxy configuration renderer.
export { computeRoutes, computeRouteTable } from './route-table.js';
export type { Backend, RouteReason, Routes, RouteSettings, RouteTable, RoutingInput } from './route-table.js';
export { Router } from './router.js';
export type { RouterDeps, RouterOptions } from './router.js';
export type { ListenAddress, RouterAddresses, RouterStatus } from './router-status.js';
export type { RouterLogger } from './cluster-source.js';
export { announceSwitchover, clearSwitchover, switchoverPauseKey } from './switchover-announcement.js';
export { formatSwitchoverPause, parseSwitchoverPause, ROUTER_PAUSE_KEY } from './switchover-pause.js';
export type { SwitchoverPause } from './switchover-pause.js';
export { renderHaproxyConfig } from './haproxy-config.js';
export type { HaproxyConfigInput, HaproxyMember } from './haproxy-config.js';
export { CANNOT_CONNECT_NOW, decodeErrorResponse, encodeEncryptionRequest, encodeErrorResponse, encodeStartupMessage, parseFirstPacket } from './pg-protocol.js';
