/**
 * The digest OPA signs for one bundle file: of its raw bytes, or for
 * structured files (`.json` data files and `.manifest`) of their canonical
 * JSON form (./bundle-signature.ts). Pure; also run on a worker thread for
 * large files (./bundle-hash.ts).
 */
import { createHash } from 'node:crypto';

export class BundleSignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleSignatureError';
  }
}

// ---- canonical JSON (the hash of structured files) ------------------------------
//
// One linear pass over the text, numbers kept as written (Go's json.Number): no
// parsed tree, no allocation per token but the output's. A file is any bytes the
// bundle server sent (the hash is what tells them from the signed ones), so its
// cost must be that of reading it: a tree of 30 M numbers (a 60 MB `.manifest`,
// 130 KB gzipped) took a minute and 3 GB before.

/**
 * Canonical text collected in chunks (a part per token would be an array of
 * tens of millions), and a nested value's text taken as it is: chunks and
 * nested texts are joined by concatenation, which V8 keeps as a rope until
 * the hash reads it, so no character is copied once per nesting level.
 */
class CanonicalText {
  #text = '';
  #pending: string[] = [];
  push(s: string): void {
    if (s.length >= 1024) {
      this.#flush();
      this.#text += s;
      return;
    }
    this.#pending.push(s);
    if (this.#pending.length >= 8192) this.#flush();
  }
  #flush(): void {
    if (this.#pending.length === 0) return;
    this.#text += this.#pending.join('');
    this.#pending = [];
  }
  text(): string {
    this.#flush();
    return this.#text;
  }
}

/** A string as Go's json.Encoder with SetEscapeHTML(false) writes it. */
function goJsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u2028\u2029]/g, (c) => (c === '\u2028' ? '\\u2028' : '\\u2029'));
}

/** Go's sort.Strings (bytewise UTF-8) on keys that may hold surrogates, whose UTF-16 order differs. */
const utf8Order = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
/** The same order for keys of code units below U+D800 only (UTF-16 order is UTF-8 order there). */
const unitOrder = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

interface Member {
  readonly key: string;
  /** The key as written in canonical text. */
  readonly keyText: string;
  readonly value: string;
}

/** The canonical JSON text OPA hashes for structured files. Throws SyntaxError for text that is not JSON. */
export function canonicalJson(text: string): string {
  const n = text.length;
  let i = 0;
  const fail = (msg: string): never => {
    throw new SyntaxError(`${msg} at offset ${i}`);
  };
  const ws = (): void => {
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
    }
  };
  // The string at i: [decoded, canonical text, whether it holds a code unit from U+D800 up].
  const str = (): [string, string, boolean] => {
    const start = i;
    let escaped = false;
    let special = false;
    let wide = false;
    let j = i + 1;
    for (; j < n; j++) {
      const c = text.charCodeAt(j);
      if (c === 0x22) break;
      if (c === 0x5c) {
        escaped = true;
        j++;
      } else if (c < 0x20) {
        i = j;
        fail('control character in a string');
      } else if (c >= 0xd800) wide = true;
      else if (c === 0x2028 || c === 0x2029) special = true;
    }
    if (j >= n) fail('unterminated string');
    i = j + 1;
    const raw = text.slice(start, i);
    if (!escaped && !special) return [raw.slice(1, -1), raw, wide];
    const decoded = JSON.parse(raw) as string;
    return [decoded, goJsonString(decoded), escaped ? /[\ud800-\uffff]/.test(decoded) : wide];
  };
  const digits = (): number => {
    const from = i;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      i++;
    }
    return i - from;
  };
  const scalar = (): string => {
    const c = text.charCodeAt(i);
    if (c === 0x22) return str()[1];
    if (c === 0x74 && text.startsWith('true', i)) {
      i += 4;
      return 'true';
    }
    if (c === 0x66 && text.startsWith('false', i)) {
      i += 5;
      return 'false';
    }
    if (c === 0x6e && text.startsWith('null', i)) {
      i += 4;
      return 'null';
    }
    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    const start = i;
    if (text.charCodeAt(i) === 0x2d) i++;
    const first = text.charCodeAt(i);
    if (first === 0x30) i++;
    else if (first >= 0x31 && first <= 0x39) digits();
    else fail('unexpected character');
    if (text.charCodeAt(i) === 0x2e) {
      i++;
      if (digits() === 0) fail('expected a digit');
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      const sign = text.charCodeAt(i);
      if (sign === 0x2b || sign === 0x2d) i++;
      if (digits() === 0) fail('expected a digit');
    }
    return text.slice(start, i);
  };
  // After an element: true at a ",", false at the closing bracket (both consumed).
  const more = (close: number, expected: string): boolean => {
    ws();
    const c = text.charCodeAt(i);
    if (c !== 0x2c && c !== close) fail(`expected ${expected}`);
    i++;
    return c === 0x2c;
  };
  const value = (depth: number, out: CanonicalText): void => {
    if (depth > 512) fail('JSON nested too deeply');
    ws();
    const c = text.charCodeAt(i);
    if (c === 0x7b) object(depth, out);
    else if (c === 0x5b) array(depth, out);
    else out.push(scalar());
  };
  const member = (depth: number): string => {
    ws();
    const c = text.charCodeAt(i);
    if (c !== 0x7b && c !== 0x5b) return scalar();
    const out = new CanonicalText();
    value(depth, out);
    return out.text();
  };
  const array = (depth: number, out: CanonicalText): void => {
    i++;
    out.push('[');
    ws();
    if (text.charCodeAt(i) === 0x5d) {
      i++;
      out.push(']');
      return;
    }
    value(depth + 1, out);
    while (more(0x5d, '"," or "]"')) {
      out.push(',');
      value(depth + 1, out);
    }
    out.push(']');
  };
  const object = (depth: number, out: CanonicalText): void => {
    i++;
    // Go keeps the last of duplicate keys, as JSON.parse does.
    const members = new Map<string, Member>();
    let wide = false;
    ws();
    if (text.charCodeAt(i) === 0x7d) i++;
    else {
      do {
        ws();
        if (text.charCodeAt(i) !== 0x22) fail('expected a string key');
        const [key, keyText, keyWide] = str();
        wide ||= keyWide;
        ws();
        if (text.charCodeAt(i) !== 0x3a) fail('expected ":"');
        i++;
        members.set(key, { key, keyText, value: member(depth + 1) });
      } while (more(0x7d, '"," or "}"'));
    }
    const sorted = [...members.values()].sort(wide ? (a, b) => utf8Order(a.key, b.key) : (a, b) => unitOrder(a.key, b.key));
    out.push('{');
    sorted.forEach((m, idx) => {
      if (idx > 0) out.push(',');
      out.push(m.keyText);
      out.push(':');
      out.push(m.value);
    });
    out.push('}');
  };
  const out = new CanonicalText();
  value(0, out);
  ws();
  if (i !== n) fail('trailing characters');
  return out.text();
}

const HASH_ALGORITHMS: Readonly<Record<string, string>> = {
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
  'SHA-224': 'sha224',
  'SHA-512-224': 'sha512-224',
  'SHA-512-256': 'sha512-256',
  'SHA3-224': 'sha3-224',
  'SHA3-256': 'sha3-256',
  'SHA3-384': 'sha3-384',
  'SHA3-512': 'sha3-512',
};

/** Whether OPA hashes a bundle file in its canonical JSON form. */
export function isStructured(path: string): boolean {
  return path.endsWith('.json') || path === '/.manifest';
}

/** Hex digest of one bundle file, as OPA computes it for signatures. */
export function bundleFileHash(path: string, bytes: Uint8Array, algorithm = 'SHA-256'): string {
  const node = HASH_ALGORITHMS[algorithm.toUpperCase()];
  if (node === undefined) throw new BundleSignatureError(`unsupported hashing algorithm ${JSON.stringify(algorithm)} for ${path}`);
  const h = createHash(node);
  if (isStructured(path)) {
    let text: string;
    try {
      text = canonicalJson(Buffer.from(bytes).toString('utf8'));
    } catch (e) {
      throw new BundleSignatureError(`${path}: not valid JSON (${(e as Error).message})`);
    }
    h.update(text, 'utf8');
  } else h.update(bytes);
  return h.digest('hex');
}

