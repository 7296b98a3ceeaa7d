import { AGENT_CONFIG_TABLE } from './agent-config.js';
import { ROUTER_CONFIG_TABLE } from './router-config.js';
import { renderSettingsTable } from './settings-table.js';
import type { SettingsTable } from './settings-table.js';

/** The README's generated reference tables, by block name. */
export const SETTINGS_DOC_TABLES: Readonly<Record<'agent' | 'router', SettingsTable>> = { agent: AGENT_CONFIG_TABLE, router: ROUTER_CONFIG_TABLE };

export type SettingsDocBlock = keyof typeof SETTINGS_DOC_TABLES;

const begin = (block: SettingsDocBlock): string => `<!-- BEGIN generated settings table: ${block} (npm run -s gen:settings-doc -- --write; do not edit by hand) -->`;
const end = (block: SettingsDocBlock): string => `<!-- END generated settings table: ${block} -->`;

/** One block as it stands in the README: markers around the rendered table. */
export function settingsDocBlock(block: SettingsDocBlock): string {
  return `${begin(block)}\n${renderSettingsTable(SETTINGS_DOC_TABLES[block])}${end(block)}`;
}

/**
 * `readme` with each generated block replaced by the current table; throws when a block's markers
 * are missing, so a README that lost them fails the drift test instead of passing it.
 */
export function withSettingsDoc(readme: string): string {
  let out = readme;
  for (const block of Object.keys(SETTINGS_DOC_TABLES) as SettingsDocBlock[]) {
    const from = out.indexOf(begin(block));
    const to = out.indexOf(end(block));
    if (from < 0 || to < from) throw new Error(`README has no generated settings block "${block}": add the lines ${begin(block)} and ${end(block)}`);
    out = `${out.slice(0, from)}${settingsDocBlock(block)}${out.slice(to + end(block).length)}`;
  }
  return out;
}
