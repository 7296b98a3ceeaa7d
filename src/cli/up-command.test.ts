import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { runtimeMode } from './up-command.js';

const BIN = fileURLToPath(new URL('./bin.ts', import.meta.url));

describe('the runtime warden up runs', () => {
  const cases: { name: string; opts: Parameters<typeof runtimeMode>[0]; prior?: Parameters<typeof runtimeMode>[1]; want: boolean; note?: RegExp }[] = [
    { name: 'a new dir gets node daemons', opts: {}, want: true },
    { name: 'a new dir with --static gets none', opts: { static: true }, want: false },
    { name: '--nodes gives node daemons', opts: { nodes: '5' }, want: true },
    { name: '--netns gives node daemons', opts: { netns: true }, want: true },
    { name: 'a dir made static stays static', opts: {}, prior: {}, want: false },
    { name: 'a dir made with node daemons keeps them, even with --static (and says so)', opts: { static: true }, prior: { nodes: [] }, want: true, note: /keeps them: --static applies to a new dir/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const mode = runtimeMode(c.opts, c.prior);
      assert.equal(mode.nodes, c.want);
      if (c.note === undefined) assert.equal(mode.note, undefined);
      else assert.match(mode.note ?? '', c.note);
    });
  }

  for (const flag of ['--nodes', '--netns']) {
    it(`refuses --static with ${flag} (exit 2), before reading anything`, async () => {
      const args = ['up', '--static', ...(flag === '--nodes' ? ['--nodes', '3'] : ['--netns']), '--dir', '/nonexistent/warden-up-test'];
      const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', BIN, ...args], { timeout: 30_000 }, (err, _stdout, stderr) => {
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr });
        });
      });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`--static runs the cluster under the supervisor without node daemons: it does not go with ${flag}`));
    });
  }
});
