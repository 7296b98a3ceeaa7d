export * from './actions.js';
export * from './cluster-view.js';
export * from './decide.js';
export * from './dynamic-config.js';
export * from './observation.js';
export * from './reason.js';
export * from './sync.js';
export * from './scheduled-restart.js';
