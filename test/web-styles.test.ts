/**
 * The page's stylesheet has no rule nested inside another rule. The page does not use CSS nesting, so a nested
 * rule means a lost `}` — which Chromium reads as valid nesting (`.a { … .b { … } }` styles `.a .b`), so every
 * rule after it silently stops applying. Two merges lost one each; the Duplicates page went unstyled.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const CSS = join(import.meta.dirname, '..', 'web', 'styles.css');

/** Each block's selector with the line it opens on, and whether it sits inside a rule (not an at-rule). */
function blocks(css: string): { selector: string; line: number; nestedIn: string | null }[] {
  const out: { selector: string; line: number; nestedIn: string | null }[] = [];
  const stack: string[] = [];
  let text = '';
  let line = 1;
  for (const m of css.matchAll(/\/\*[\s\S]*?\*\/|[{}]|\n|[^{}\n/]+|\//g)) {
    const t = m[0];
    if (t.startsWith('/*')) {
      line += t.split('\n').length - 1;
      continue;
    }
    if (t === '\n') {
      line++;
      text += ' ';
    } else if (t === '{') {
      const selector = text.trim().split(';').pop()!.trim();
      const parent = stack.at(-1);
      out.push({ selector, line, nestedIn: parent !== undefined && !parent.startsWith('@') ? parent : null });
      stack.push(selector);
      text = '';
    } else if (t === '}') {
      stack.pop();
      text = '';
    } else text += t;
  }
  expect(stack, 'every block closed').toEqual([]);
  return out;
}

describe('web/styles.css', () => {
  it('closes every rule before the next begins (no rule nested in a rule)', () => {
    const nested = blocks(readFileSync(CSS, 'utf8')).filter((b) => b.nestedIn !== null);
    expect(nested.map((b) => `line ${b.line}: "${b.selector}" inside "${b.nestedIn}"`)).toEqual([]);
  });

  it('finds a lost brace (the check itself)', () => {
    const broken = blocks('.a {\n  color: red;\n\n/* next */\n.b {\n  color: blue;\n}\n}\n');
    expect(broken.filter((b) => b.nestedIn !== null)).toEqual([{ selector: '.b', line: 5, nestedIn: '.a' }]);
  });
});
