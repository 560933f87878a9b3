import { loadConfigText } from '../../src/config/load.js';
import { ConfigError, type ConfigIssue } from '../../src/errors.js';

/**
 * The problems `loadConfigText` reports for a config text (as `gatehouse.yaml`), or [] when it
 * loads. Anything else it throws is rethrown.
 *
 * @example
 * ```ts
 * expect(issuesOf('listen: {}').map((i) => i.path)).toContain('listen.port');
 * ```
 */
export function issuesOf(text: string, env: NodeJS.ProcessEnv = {}): ConfigIssue[] {
  try {
    loadConfigText(text, 'gatehouse.yaml', env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues];
    throw err;
  }
  return [];
}
