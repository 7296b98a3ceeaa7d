export * from './checker.js';
export * from './cluster.js';
export * from './faults.js';
export * from './random.js';
export * from './report.js';
export * from './run.js';
export * from './writer.js';
