/**
 * Whole-number options and arguments of every command go through the one set of rules in src/validation:
 * a malformed value is a usage error (exit 2) naming the option and what it must be, before anything opens
 * or is written. Before, several commands read them with parseInt (`--seed 1.5` built seed 1, `--context 5x`
 * cut at 5, a bad `--context` was ignored) or with words of their own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';

const dataDir = mkdtempSync(join(tmpdir(), 'clipdex-cli-options-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const cases: { args: string[]; message: RegExp }[] = [
  { args: ['serve', '--port', '70000'], message: /--port must be an integer from 0 to 65535, got "70000"/ },
  { args: ['serve', '--port', '0x50'], message: /--port must be an integer from 0 to 65535, got "0x50"/ },
  { args: ['status', '--errors', '--limit', '1.5'], message: /--limit must be an integer from 1 to 1000000, got "1.5"/ },
  { args: ['labels', 'list', '--limit', '0'], message: /--limit must be an integer from 1 to 1000000, got "0"/ },
  { args: ['labels', 'edit', 'seven', 'a caption'], message: /a label id must be a positive integer, got "seven" \(see `clipdex labels list`\)/ },
  { args: ['adapters', 'activate', 'latest'], message: /a version must be a positive integer, got "latest" \(such as 3; see `clipdex adapters list`\)/ },
  { args: ['models', 'build-tiny', '--out', join(dataDir, 'never'), '--seed', '1.5'], message: /--seed must be an integer from 0 to 2147483647, got "1.5"/ },
  { args: ['tokenize', 'a dog', '--context', '5x'], message: /--context must be an integer from 2 to 10000, got "5x"/ },
];

describe('whole-number options', () => {
  it.each(cases)('clipdex $args: exit 2 and says what the value must be', async ({ args, message }) => {
    const r = await runCli(['--data-dir', dataDir, ...args]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});
