/**
 * application/x-www-form-urlencoded parameters as the WHATWG URL standard
 * parses and serialises them (URLSearchParams' semantics), for the
 * hot path: every forwarded request parses its query string or form body and
 * serialises the enforced parameters again. In the gateway's CPU profile,
 * URLSearchParams cost ≈ 5 % of a proxied request: each instance is marked
 * transferable on construction, and parsing and serialising walk UTF-8 bytes in
 * JS. This walks the (nearly always ASCII) text through lookup tables and
 * reads bytes only for escaped non-ASCII. A property test holds it to the
 * standard's algorithm, and to URLSearchParams wherever Node's implementation
 * follows the standard (test/backends/form-params.test.ts).
 */
import { TextMemo } from '../util/text-memo.ts';
import { isWellFormedUnicode } from '../util/unicode.ts';

/** The part of URLSearchParams that parameter enforcement uses. */
export interface Params {
  get(name: string): string | null;
  getAll(name: string): string[];
  set(name: string, value: string): void;
  append(name: string, value: string): void;
  delete(name: string): void;
  /** How many name/value pairs there are. */
  readonly size: number;
  /** The name/value pairs, in order. */
  [Symbol.iterator](): Iterator<[string, string]>;
  toString(): string;
}

export class FormParams implements Params {
  readonly #names: string[] = [];
  readonly #values: string[] = [];

  /** Parse `init` as `new URLSearchParams(init)` does (one leading "?" is ignored). */
  constructor(init = '') {
    if (init !== '') this.appendEncoded(init);
  }

  /** Append the pairs `init` encodes, as `new URLSearchParams(init)` would read them. */
  appendEncoded(init: string): void {
    // The standard reads the UTF-8 bytes of the input, where an unpaired surrogate is U+FFFD's.
    const text = usv(init);
    const input = text.charCodeAt(0) === 0x3f ? text.slice(1) : text;
    let start = 0;
    while (start < input.length) {
      let end = input.indexOf('&', start);
      if (end < 0) end = input.length;
      if (end > start) {
        const eq = input.indexOf('=', start);
        if (eq >= 0 && eq < end) {
          this.#names.push(decodeComponent(input.slice(start, eq)));
          this.#values.push(decodeComponent(input.slice(eq + 1, end)));
        } else {
          this.#names.push(decodeComponent(input.slice(start, end)));
          this.#values.push('');
        }
      }
      start = end + 1;
    }
  }

  get size(): number {
    return this.#names.length;
  }

  get(name: string): string | null {
    const i = this.#names.indexOf(usv(name));
    return i < 0 ? null : (this.#values[i] as string);
  }

  getAll(name: string): string[] {
    name = usv(name);
    const out: string[] = [];
    for (let i = 0; i < this.#names.length; i++) if (this.#names[i] === name) out.push(this.#values[i] as string);
    return out;
  }

  has(name: string): boolean {
    return this.#names.includes(usv(name));
  }

  append(name: string, value: string): void {
    this.#names.push(usv(name));
    this.#values.push(usv(value));
  }

  /** As URLSearchParams#set: the first pair of that name takes the value and keeps its place, the others go; else appended. */
  set(name: string, value: string): void {
    name = usv(name);
    const first = this.#names.indexOf(name);
    if (first < 0) {
      this.append(name, value);
      return;
    }
    this.#values[first] = usv(value);
    this.#remove(name, first + 1);
  }

  delete(name: string): void {
    this.#remove(usv(name), 0);
  }

  /** Deletes every pair whose name is not in `names`, in one pass (a delete per name is a pass each). */
  keepOnly(names: ReadonlySet<string>): void {
    this.#retain(0, (name) => names.has(name));
  }

  #remove(name: string, from: number): void {
    this.#retain(from, (n) => n !== name);
  }

  /** Keeps, from index `from` on, the pairs whose name `keep` accepts, in order (one pass). */
  #retain(from: number, keep: (name: string) => boolean): void {
    let kept = from;
    for (let i = from; i < this.#names.length; i++) {
      if (!keep(this.#names[i] as string)) continue;
      this.#names[kept] = this.#names[i] as string;
      this.#values[kept] = this.#values[i] as string;
      kept++;
    }
    this.#names.length = kept;
    this.#values.length = kept;
  }

  *[Symbol.iterator](): IterableIterator<[string, string]> {
    for (let i = 0; i < this.#names.length; i++) yield [this.#names[i] as string, this.#values[i] as string];
  }

  /** As URLSearchParams#toString: name=value pairs joined by "&", form-encoded. */
  toString(): string {
    let out = '';
    for (let i = 0; i < this.#names.length; i++) {
      if (i > 0) out += '&';
      out += encodeComponent(this.#names[i] as string) + '=' + encodeComponent(this.#values[i] as string);
    }
    return out;
  }
}

/**
 * A string as WebIDL's USVString conversion leaves it, which URLSearchParams applies to every
 * name and value it is given: an unpaired surrogate becomes U+FFFD.
 */
function usv(s: string): string {
  const text = String(s);
  return isWellFormedUnicode(text) ? text : Buffer.from(text, 'utf8').toString('utf8');
}

/** One name or value of well-formed input: "+" is a space, then percent-decoded as UTF-8. */
function decodeUncached(raw: string): string {
  let out = '';
  let run = 0; // start of the text not yet copied to `out`
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x2b) {
      out += raw.slice(run, i) + ' ';
      run = i + 1;
    } else if (c === 0x25) {
      const byte = i + 2 < raw.length ? (HEX_VALUE[raw.charCodeAt(i + 1)] ?? -1) * 16 + (HEX_VALUE[raw.charCodeAt(i + 2)] ?? -256) : -1;
      // A "%" without two hex digits stays as it is. An escaped non-ASCII byte is part of a UTF-8
      // sequence (rare in queries): the whole component is decoded as bytes.
      if (byte < 0) continue;
      if (byte >= 0x80) return decodeBytes(raw);
      out += raw.slice(run, i) + String.fromCharCode(byte);
      i += 2;
      run = i + 1;
    }
  }
  return run === 0 ? raw : out + raw.slice(run);
}

/**
 * The standard's percent-decoding over the component's UTF-8 bytes ("+" a space first), then
 * UTF-8 decoding with U+FFFD for invalid sequences (Buffer's decoder, as URLSearchParams uses).
 */
function decodeBytes(raw: string): string {
  const bytes = Buffer.from(raw, 'utf8');
  const out = Buffer.allocUnsafe(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    let b = bytes[i] as number;
    if (b === 0x2b) b = 0x20;
    else if (b === 0x25 && i + 2 < bytes.length) {
      const v = (HEX_VALUE[bytes[i + 1] as number] ?? -1) * 16 + (HEX_VALUE[bytes[i + 2] as number] ?? -256);
      if (v >= 0) {
        b = v;
        i += 2;
      }
    }
    out[n++] = b;
  }
  return out.toString('utf8', 0, n);
}

/** Hex digit values by char code (undefined: not a hex digit). */
const HEX_VALUE: readonly (number | undefined)[] = Array.from({ length: 128 }, (_, c) => {
  const d = '0123456789abcdef'.indexOf(String.fromCharCode(c).toLowerCase());
  return d < 0 ? undefined : d;
});

/**
 * Form-encoding of each ASCII character: itself for [A-Za-z0-9*._-], "+" for a space, else %XX.
 * Built once; JS over this table beats V8's encodeURIComponent (a runtime call) on query-sized text.
 */
const FORM_ASCII: readonly string[] = Array.from({ length: 128 }, (_, c) => {
  const ch = String.fromCharCode(c);
  if (/^[A-Za-z0-9*._-]$/.test(ch)) return ch;
  if (c === 0x20) return '+';
  return `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
});

/** What encodeURIComponent leaves unescaped but form-encoding escapes, and its %20 for a space. */
const URI_ONLY = /[!'()~]|%20/g;
const URI_ONLY_AS_FORM: Readonly<Record<string, string>> = { '!': '%21', "'": '%27', '(': '%28', ')': '%29', '~': '%7E', '%20': '+' };

function encodeUncached(s: string): string {
  let out = '';
  let run = 0; // start of the safe text not yet copied to `out`
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) {
      // Non-ASCII: UTF-8 bytes, escaped (names and values are USVStrings, so encodeURIComponent cannot throw).
      return out + s.slice(run, i) + encodeURIComponent(s.slice(i)).replace(URI_ONLY, (m) => URI_ONLY_AS_FORM[m] as string);
    }
    const e = FORM_ASCII[c] as string;
    if (e.length === 1 && e !== '+') continue;
    out += s.slice(run, i) + e;
    run = i + 1;
  }
  return run === 0 ? s : out + s.slice(run);
}

/** Long components (query text) repeat: their conversions are kept (src/util/text-memo.ts). */
const decodeMemo = new TextMemo(decodeUncached);
const encodeMemo = new TextMemo(encodeUncached);
const decodeComponent = (raw: string): string => decodeMemo.get(raw);
const encodeComponent = (s: string): string => encodeMemo.get(s);
