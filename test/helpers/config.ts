import path from 'node:path';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
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

/** The problems `loadConfigFile` reports for `dir/gatehouse.yaml` (relative schema files and all), or []. */
export function fileIssues(dir: string): ConfigIssue[] {
  try {
    loadConfigFile(path.join(dir, 'gatehouse.yaml'), {});
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues];
    throw err;
  }
  return [];
}
