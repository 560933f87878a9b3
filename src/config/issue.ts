import { formatPath } from './load.js';
import type { GatehouseConfig } from './types.js';
import type { ConfigIssue } from '../errors.js';

/**
 * A config issue for a key path, with the line and column of that key in the config file
 * (the locator the config was loaded with; line 0 for a config built in code). Areas find some
 * problems only when they compile, e.g. CEL.
 *
 * @example
 * ```ts
 * issues.push(configIssue(config, ['routes', 2, 'claims', 0], 'is not a valid CEL expression: …'));
 * ```
 */
export function configIssue(config: GatehouseConfig, keyPath: readonly (string | number)[], message: string): ConfigIssue {
  return config.locate?.(keyPath, message) ?? { file: config.file || 'gatehouse.yaml', line: 0, column: 0, path: formatPath(keyPath), message };
}
