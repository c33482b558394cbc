/** An unpaired UTF-16 surrogate: the text has no lossless UTF-8 encoding. */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * String.prototype.isWellFormed (ES2024, native in Node >= 20): the same answer
 * as LONE_SURROGATE, without running a look-behind regex over every string.
 */
const nativeIsWellFormed = (String.prototype as { isWellFormed?: (this: string) => boolean }).isWellFormed;

/** True when `s` has no unpaired UTF-16 surrogate (i.e. it encodes to UTF-8 losslessly). */
export function isWellFormedUnicode(s: string): boolean {
  return nativeIsWellFormed === undefined ? !LONE_SURROGATE.test(s) : nativeIsWellFormed.call(s);
}
