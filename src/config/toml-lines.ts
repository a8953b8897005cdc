/**
 * Where each key of a TOML document was written, so a problem with a value
 * can name its line: TOML parsers hand back values without positions.
 *
 * The document is read again for its keys only: table headers (`[a.b]`,
 * `[[a]]`) and `key =` at the start of a statement, bare, quoted or dotted.
 * Values are skipped whole — strings on several lines, arrays and inline
 * tables over several lines — so nothing inside a value is ever taken for a
 * key. It is meant for text the parser has already accepted; on anything
 * else it stops early and places what it could.
 */

export type KeyPath = readonly (string | number)[];

const SEP = '\u0000';
const BARE = /[A-Za-z0-9_-]/;
const escapes: Readonly<Record<string, string>> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', e: '\u001b', '"': '"', '\\': '\\' };

export class KeyLines {
  readonly #lines = new Map<string, number>();
  readonly #lineStarts: number[] = [0];
  readonly #src: string;
  #pos = 0;

  constructor(source: string) {
    this.#src = source;
    for (let i = 0; i < source.length; i++) if (source[i] === '\n') this.#lineStarts.push(i + 1);
    try {
      this.#scan();
    } catch {
      // Not valid TOML after all: keep what was placed.
    }
  }

  /**
   * The line of `path` (numbers, as array indices, are skipped), else of its
   * nearest written ancestor — the inline table or table header it is in —
   * else 1.
   */
  lineOf(path: KeyPath): number {
    const keys = path.filter((k): k is string => typeof k === 'string');
    for (let n = keys.length; n > 0; n--) {
      const line = this.#lines.get(keys.slice(0, n).join(SEP));
      if (line !== undefined) return line;
    }
    return 1;
  }

  /** The first line of each path and of every path above it. */
  #record(path: readonly string[], at: number): void {
    const line = this.#lineAt(at);
    for (let n = 1; n <= path.length; n++) {
      const key = path.slice(0, n).join(SEP);
      if (!this.#lines.has(key)) this.#lines.set(key, line);
    }
  }

  #lineAt(pos: number): number {
    let lo = 0;
    let hi = this.#lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#lineStarts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  #scan(): void {
    const s = this.#src;
    let table: string[] = [];
    for (;;) {
      this.#skipBlank(true);
      if (this.#pos >= s.length) return;
      const start = this.#pos;
      if (s[this.#pos] === '[') {
        const double = s[this.#pos + 1] === '[';
        this.#pos += double ? 2 : 1;
        table = this.#key();
        this.#skipBlank(false);
        this.#pos += double ? 2 : 1;
        this.#record(table, start);
      } else {
        const key = this.#key();
        this.#record([...table, ...key], start);
        this.#skipBlank(false);
        if (s[this.#pos] !== '=') throw new Error('expected =');
        this.#pos++;
        this.#skipValue();
      }
    }
  }

  /** Spaces and comments; newlines too when `newlines`. */
  #skipBlank(newlines: boolean): void {
    const s = this.#src;
    while (this.#pos < s.length) {
      const c = s[this.#pos]!;
      if (c === ' ' || c === '\t' || (newlines && (c === '\n' || c === '\r'))) this.#pos++;
      else if (c === '#') while (this.#pos < s.length && s[this.#pos] !== '\n') this.#pos++;
      else return;
    }
  }

  /** A dotted key: `a`, `"a.b"`, `'a'`, `a . "b" . c`. */
  #key(): string[] {
    const s = this.#src;
    const parts: string[] = [];
    for (;;) {
      this.#skipBlank(false);
      const c = s[this.#pos];
      if (c === '"' || c === "'") parts.push(this.#string());
      else {
        const from = this.#pos;
        while (this.#pos < s.length && BARE.test(s[this.#pos]!)) this.#pos++;
        if (this.#pos === from) throw new Error('expected a key');
        parts.push(s.slice(from, this.#pos));
      }
      this.#skipBlank(false);
      if (s[this.#pos] !== '.') return parts;
      this.#pos++;
    }
  }

  /** A string of any of the four kinds, its value decoded (what keys need), the position past it. */
  #string(): string {
    const s = this.#src;
    const quote = s[this.#pos]!;
    const multi = s.startsWith(quote.repeat(3), this.#pos);
    this.#pos += multi ? 3 : 1;
    let out = '';
    while (this.#pos < s.length) {
      const c = s[this.#pos]!;
      if (c === quote && (!multi || s.startsWith(quote.repeat(3), this.#pos))) {
        this.#pos += multi ? 3 : 1;
        // Up to two quotes may end a multi-line string's content: `""""` and `"""""`.
        for (let extra = 0; multi && extra < 2 && s[this.#pos] === quote; extra++) this.#pos++;
        return out;
      }
      if (c === '\\' && quote === '"') {
        const e = s[this.#pos + 1] ?? '';
        const hex = e === 'u' ? 4 : e === 'U' ? 8 : 0;
        if (hex > 0) {
          out += String.fromCodePoint(parseInt(s.slice(this.#pos + 2, this.#pos + 2 + hex), 16));
          this.#pos += 2 + hex;
        } else {
          out += escapes[e] ?? '';
          this.#pos += 2;
        }
        continue;
      }
      out += c;
      this.#pos++;
    }
    throw new Error('unterminated string');
  }

  /** A value to the end of its statement: through brackets, braces and strings, over as many lines as they take. */
  #skipValue(): void {
    const s = this.#src;
    let depth = 0;
    while (this.#pos < s.length) {
      const c = s[this.#pos]!;
      if (c === '"' || c === "'") this.#string();
      else if (c === '#') this.#skipBlank(false);
      else if (c === '\n' && depth === 0) return;
      else {
        if (c === '[' || c === '{') depth++;
        else if (c === ']' || c === '}') depth--;
        this.#pos++;
      }
    }
  }
}
