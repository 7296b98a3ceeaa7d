import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { formatSpecError, parseAgentConfig, parseRouterConfig } from './index.js';
import { settingsDocBlock, withSettingsDoc } from './settings-doc.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The first ```yaml block after `heading` in the README. */
function yamlAfter(heading: string): string {
  const at = README.indexOf(heading);
  assert.ok(at >= 0, `README has no ${heading}`);
  const m = /```yaml\n([\s\S]*?)```/.exec(README.slice(at));
  assert.ok(m?.[1] !== undefined, `no yaml example after ${heading}`);
  return m[1];
}

describe('the README settings reference', () => {
  it('is what the settings tables generate (run npm run -s gen:settings-doc -- --write after changing one)', () => {
    // Compared block by block so that a failure shows the table that drifted, not the whole README.
    for (const block of ['agent', 'router'] as const) {
      const expected = settingsDocBlock(block);
      assert.ok(README.includes(expected), `README's ${block} table differs from the generated one; run npm run -s gen:settings-doc -- --write\n${expected}`);
    }
    assert.equal(withSettingsDoc(README), README);
  });

  it('refuses a README that lost a block\'s markers rather than passing it', () => {
    assert.throws(() => withSettingsDoc('# no tables here\n'), /README has no generated settings block "agent"/);
  });

  it('has an agent config example that the agent reads', () => {
    const r = parseAgentConfig(yamlAfter('### Agent config'), 'README.md', {}, { readPasswordFile: () => 'secret\n' });
    assert.ok(r.ok, r.ok ? '' : r.errors.map(formatSpecError).join('\n'));
  });

  it('has a router config example that the router reads', () => {
    const r = parseRouterConfig(yamlAfter('- **Start:**'), 'README.md', {});
    assert.ok(r.ok, r.ok ? '' : r.errors.map(formatSpecError).join('\n'));
  });
});
