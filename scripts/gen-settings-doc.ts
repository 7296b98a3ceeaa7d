// Prints the README's settings reference tables, generated from the settings tables in src/spec;
// with --write, replaces the generated blocks in README.md. src/spec/settings-doc.test.ts fails when
// README.md differs from what this prints.
import { readFileSync, writeFileSync } from 'node:fs';
import { settingsDocBlock, SETTINGS_DOC_TABLES, withSettingsDoc } from '../src/spec/settings-doc.js';
import type { SettingsDocBlock } from '../src/spec/settings-doc.js';

const readmePath = new URL('../README.md', import.meta.url);
if (process.argv.includes('--write')) {
  const before = readFileSync(readmePath, 'utf8');
  const after = withSettingsDoc(before);
  if (after !== before) writeFileSync(readmePath, after);
  process.stdout.write(after === before ? 'README.md is up to date\n' : 'README.md updated\n');
} else {
  for (const block of Object.keys(SETTINGS_DOC_TABLES) as SettingsDocBlock[]) process.stdout.write(`${settingsDocBlock(block)}\n\n`);
}
