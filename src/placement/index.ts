// Public surface of src/placement: kube-scheduler's placement semantics as a pure function.
export { placeInstances } from './place-instances.js';
export { clusterInstances, defaultSpreadConstraints, operatorLabels } from './cluster-instances.js';
export type { ClusterToPlace, InstanceSetScheduling, OperatorKind } from './cluster-instances.js';
export { selectorMatches } from './selectors.js';
export {
  FILTERS,
  LABEL_SELECTOR_OPERATORS,
  NODE_INCLUSION_POLICIES,
  NODE_SELECTOR_OPERATORS,
  SCORE_WEIGHTS,
  TAINT_EFFECTS,
  TOLERATION_OPERATORS,
  WHEN_UNSATISFIABLE,
} from './types.js';
export type * from './types.js';
