import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parameterProblem } from './pg-parameter-check.js';

describe('PostgreSQL parameter values are checked as PostgreSQL 15 parses them', () => {
  const accepted: ReadonlyArray<[string, string | number | boolean]> = [
    ['max_connections', 200],
    ['max_connections', '200'],
    ['shared_buffers', '128MB'],
    ['shared_buffers', '16384'],
    ['work_mem', '8MB'],
    ['work_mem', '1.5MB'],
    ['work_mem', ' 64 kB '],
    ['statement_timeout', '30s'],
    ['statement_timeout', '1min'],
    ['statement_timeout', 0],
    ['log_min_duration_statement', -1],
    ['checkpoint_completion_target', 0.9],
    ['vacuum_cost_delay', '2ms'],
    ['hot_standby_feedback', 'on'],
    ['hot_standby_feedback', true],
    ['hot_standby_feedback', 'TRUE'],
    ['hot_standby_feedback', 'of'],
    ['wal_log_hints', 'yes'],
    ['synchronous_commit', 'remote_apply'],
    ['synchronous_commit', 'true'],
    ['wal_level', 'logical'],
    ['log_statement', 'DDL'],
    ['timezone', 'UTC'],
    ['pg_stat_statements.max', '10000'],
    ['Work_Mem', '4MB'],
  ];
  for (const [name, value] of accepted) {
    it(`accepts ${name} = ${JSON.stringify(value)}`, () => assert.equal(parameterProblem(name, value), undefined));
  }

  const refused: ReadonlyArray<[string, string | number | boolean, RegExp]> = [
    ['max_connections', -1, /-1 is outside the valid range for parameter "max_connections" \(1 \.\. 262143\)/],
    ['max_connections', 'abc', /invalid value for parameter "max_connections": "abc"/],
    ['max_connections', '100\nshared_buffers = 1TB', /control characters/],
    ['work_mem', '8XB', /valid units for this parameter are "B", "kB", "MB", "GB", and "TB"/],
    ['work_mem', '8s', /valid units for this parameter are "B"/],
    ['statement_timeout', '5MB', /valid units for this parameter are "us", "ms", "s", "min", "h", and "d"/],
    ['max_connections', '10MB', /takes no unit/],
    ['shared_buffers', '64kB', /outside the valid range for parameter "shared_buffers"/],
    ['work_mem', '4TB', /outside the valid range|exceeds integer range/],
    ['hot_standby_feedback', 'maybe', /requires a Boolean value/],
    ['hot_standby_feedback', 'o', /requires a Boolean value/],
    ['synchronous_commit', 'sometimes', /available values: local, remote_write, remote_apply, on, off/],
    ['block_size', 8192, /cannot be changed/],
    ['max_conections', 100, /unrecognized configuration parameter "max_conections"; did you mean "max_connections"\?/],
    ['application_name', 'a\u0000b', /control characters/],
  ];
  for (const [name, value, why] of refused) {
    it(`refuses ${name} = ${JSON.stringify(value)}`, () => assert.match(parameterProblem(name, value) ?? 'accepted', why));
  }
});
