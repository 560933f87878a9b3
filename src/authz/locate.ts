import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { formatPath } from '../config/load.js';
import type { GatehouseConfig } from '../config/types.js';
import type { ConfigIssue } from '../errors.js';

interface Source {
  doc: ReturnType<typeof parseDocument> | null;
  lines: LineCounter;
}

const sources = new WeakMap<GatehouseConfig, Source>();

/**
 * A config issue for a key path, with the line and column of that key in the config file
 * when the file can be read (areas find some problems only when they compile, e.g. CEL).
 *
 * @example
 * ```ts
 * issues.push(configIssue(config, ['routes', 2, 'claims', 0], 'is not a valid CEL expression: …'));
 * ```
 */
export function configIssue(config: GatehouseConfig, keyPath: readonly (string | number)[], message: string): ConfigIssue {
  let source = sources.get(config);
  if (!source) {
    const lines = new LineCounter();
    let doc: Source['doc'] = null;
    try {
      if (config.file) doc = parseDocument(readFileSync(config.file, 'utf8'), { lineCounter: lines });
    } catch {
      doc = null;
    }
    source = { doc, lines };
    sources.set(config, source);
  }
  let line = 0;
  let column = 0;
  if (source.doc) {
    let node: unknown = source.doc.contents;
    let last: Node | undefined;
    for (const part of keyPath) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(part));
        if (!pair) break;
        node = pair.value;
      } else if (isSeq(node) && typeof part === 'number') {
        node = node.items[part];
      } else break;
      if (node && typeof node === 'object' && 'range' in node) last = node as Node;
    }
    const offset = last?.range?.[0];
    if (offset !== undefined) {
      const pos = source.lines.linePos(offset);
      line = pos.line;
      column = pos.col;
    }
  }
  return { file: config.file || 'gatehouse.yaml', line, column, path: formatPath(keyPath), message };
}
