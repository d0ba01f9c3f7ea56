/**
 * The text encoder feeds what the graph declares: int64 or int32 ids, and an attention mask when the graph
 * has one (some exports do). A hand-made graph exposes exactly what it was fed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder, type DTypeName } from '../src/model/onnx-graph.js';
import { TextEncoder } from '../src/model/text-encoder.js';
import { ClipTokenizer, byteLevelVocabulary } from '../src/model/tokenizer.js';
import { openTower } from '../src/model/tower-session.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-textin-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** embeds = [Σ ids·mask, Σ mask] (+ a tiny constant so it never normalises a zero vector). */
function probeGraph(idType: DTypeName, withMask: boolean, seq: number | string): string {
  const b = new GraphBuilder('probe');
  const ids = b.input('input_ids', idType, ['batch', seq]);
  const idsF = b.op('Cast', [ids], { to: 1 });
  let weighted = idsF;
  let count = b.op('Mul', [idsF, b.scalar(0)]);
  count = b.op('Add', [count, b.scalar(1)]);
  if (withMask) {
    const mask = b.op('Cast', [b.input('attention_mask', idType, ['batch', seq])], { to: 1 });
    weighted = b.op('Mul', [idsF, mask]);
    count = mask;
  }
  const sumIds = b.op('ReduceSum', [weighted, b.int64([1])], { keepdims: 1 });
  const sumCount = b.op('ReduceSum', [count, b.int64([1])], { keepdims: 1 });
  b.op('Concat', [sumIds, sumCount], { axis: 1 }, 'text_embeds');
  b.output('text_embeds', 'float', ['batch', 2]);
  const file = join(tmp, `${idType}-${withMask}-${seq}.onnx`);
  writeFileSync(file, b.toBytes(13));
  return file;
}

const vocab = byteLevelVocabulary();
const tokenizer = ClipTokenizer.fromVocabAndMerges(vocab.vocab, vocab.merges);
const spec = { file: '', input: 'input_ids', output: 'text_embeds', normalized: false };

async function encoderFor(idType: DTypeName, withMask: boolean, seq: number | string): Promise<TextEncoder> {
  const tower = await openTower(probeGraph(idType, withMask, seq), spec, 'text', { providers: ['cpu'], threads: 1 });
  return new TextEncoder(tower, tokenizer, 77);
}

/** The [Σ ids, count] direction the probe should report for `text`, padded or not. */
function expectedRatio(text: string): number {
  const ids = tokenizer.encode(text);
  return ids.reduce((a, b) => a + b, 0) / ids.length;
}

describe('text encoder inputs', () => {
  const texts = ['a', 'a longer phrase than the first'];

  it('feeds an attention mask that marks exactly the real tokens of each padded row', async () => {
    for (const idType of ['int64', 'int32'] as const) {
      const enc = await encoderFor(idType, true, 'sequence');
      const out = await enc.encode(texts, { padToContext: true });
      texts.forEach((t, i) => expect(out[i]![0]! / out[i]![1]!, `${idType} ${t}`).toBeCloseTo(expectedRatio(t), 4));
    }
  });

  it('feeds int32 ids to a graph that declares int32, at a fixed length of 77', async () => {
    const enc = await encoderFor('int32', false, 77);
    expect(enc.dynamicLength).toBe(false);
    const [out] = await enc.encode(['hello']);
    // No mask: padding (id 0) adds to the count but not the sum, so the count is the full 77.
    expect(out![0]! / out![1]!).toBeCloseTo(tokenizer.encode('hello').reduce((a, b) => a + b, 0) / 77, 4);
  });

  it('runs a free-length graph at the batch’s longest real length', async () => {
    const enc = await encoderFor('int64', false, 'sequence');
    expect(enc.dynamicLength).toBe(true);
    const [short] = await enc.encode(['hello']);
    expect(short![0]! / short![1]!).toBeCloseTo(expectedRatio('hello'), 4);
  });

  it('refuses a graph input it does not know how to feed', async () => {
    const b = new GraphBuilder('odd');
    const ids = b.input('input_ids', 'int64', ['batch', 'sequence']);
    b.input('token_type_ids', 'int64', ['batch', 'sequence']);
    b.op('Cast', [ids], { to: 1 }, 'text_embeds');
    b.output('text_embeds', 'float', ['batch', 'sequence']);
    const file = join(tmp, 'odd.onnx');
    writeFileSync(file, b.toBytes(13));
    const enc = new TextEncoder(await openTower(file, spec, 'text', { providers: ['cpu'] }), tokenizer, 77);
    await expect(enc.encode(['x'])).rejects.toMatchObject({ code: 'MODEL_INVALID', message: expect.stringMatching(/token_type_ids/) });
  });
});
