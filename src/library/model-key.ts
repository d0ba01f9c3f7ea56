import { open, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createHash } from 'node:crypto';
import type { ModelSpec } from '../model/model-dir.js';

const SAMPLE = 64 * 1024;

/**
 * The key stored with every embedding and index: the model's name plus a fingerprint of its weights.
 * Two models at the same path (a rebuilt test model, a re-exported directory) must never share vectors,
 * and hashing 600 MB at every start would cost seconds, so the fingerprint covers each ONNX file's size
 * and its first and last 64 KB — where the graph and the last initialisers live.
 */
export async function modelKeyFor(spec: ModelSpec): Promise<string> {
  const hash = createHash('sha256');
  for (const file of [spec.vision.file, spec.text.file]) {
    const path = join(spec.dir, file);
    const { size } = await stat(path);
    hash.update(`${file}:${size}:`);
    const fh = await open(path, 'r');
    try {
      for (const position of [0, Math.max(0, size - SAMPLE)]) {
        const buf = Buffer.alloc(Math.min(SAMPLE, size));
        await fh.read(buf, 0, buf.length, position);
        hash.update(buf);
      }
    } finally {
      await fh.close();
    }
  }
  const name = spec.id.startsWith('dir:') ? basename(spec.dir) : spec.id;
  return `${name}#${hash.digest('hex').slice(0, 12)}`;
}
