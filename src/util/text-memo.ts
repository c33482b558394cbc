/**
 * Recent long texts and what a pure function made of them. Dashboards send the
 * same query text on every refresh, and the gateway hands the same string
 * objects on (the rewrite cache's answers, this memo's own), whose hashes V8
 * has already computed: a lookup then costs less than walking the text again.
 * The function must be pure, so a kept answer cannot go stale. Bounded by
 * entries and characters; cleared when full. Texts shorter than `minChars`
 * cost less to convert than to look up and are converted every time.
 */
export class TextMemo {
  readonly #map = new Map<string, string>();
  #chars = 0;
  readonly #compute: (s: string) => string;
  readonly #minChars: number;

  constructor(compute: (s: string) => string, minChars = 24) {
    this.#compute = compute;
    this.#minChars = minChars;
  }

  get(s: string): string {
    if (s.length < this.#minChars) return this.#compute(s);
    const known = this.#map.get(s);
    if (known !== undefined) return known;
    const out = this.#compute(s);
    if (s.length <= MAX_TEXT_CHARS) {
      if (this.#map.size >= MAX_ENTRIES || this.#chars > MAX_TOTAL_CHARS) {
        this.#map.clear();
        this.#chars = 0;
      }
      this.#map.set(s, out);
      this.#chars += s.length + out.length;
    }
    return out;
  }
}

const MAX_TEXT_CHARS = 16 * 1024;
const MAX_ENTRIES = 1024;
const MAX_TOTAL_CHARS = 2 * 1024 * 1024;
