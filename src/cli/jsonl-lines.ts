/**
 * `rewrite --jsonl` input: one record per line, so output record N answers input
 * line N. Lines end at "\n" (a "\r" before it is dropped) and nowhere else:
 * readline also splits on U+2028/U+2029, which JSON allows unescaped inside a
 * string, and that would shift every later record. Each line is decoded
 * strictly: invalid UTF-8 is refused, not rewritten as U+FFFD (which would
 * print a different query than the one given).
 */

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BYTE_ORDER_MARK = '\uFEFF';

/** One input line: its text, or why it cannot be used (reported as that line's `{"error": …}` record). */
export type InputLine = { readonly text: string } | { readonly error: string };

// ignoreBOM: a BOM is dropped at the start of the input only (below), not at the start of every line.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeLine(bytes: Uint8Array, first: boolean): InputLine {
  const end = bytes.length > 0 && bytes[bytes.length - 1] === CARRIAGE_RETURN ? bytes.length - 1 : bytes.length;
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(0, end));
  } catch {
    return { error: 'line is not valid UTF-8' };
  }
  if (first && text.startsWith(BYTE_ORDER_MARK)) text = text.slice(BYTE_ORDER_MARK.length);
  // Kept as a record, not skipped: skipping would shift every later record.
  if (text.trim() === '') return { error: 'empty line' };
  return { text };
}

/**
 * The lines of a byte stream (stdin), in order, as they arrive. A final line
 * without "\n" counts; the "\n" that ends the input does not start another.
 */
export async function* inputLines(input: AsyncIterable<Uint8Array | string>): AsyncGenerator<InputLine> {
  // The start of a line that has not ended yet, chunk by chunk (joined once it ends).
  let partial: Uint8Array[] = [];
  let first = true;
  for await (const chunk of input) {
    let rest = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    for (let nl = rest.indexOf(NEWLINE); nl !== -1; nl = rest.indexOf(NEWLINE)) {
      yield decodeLine(Buffer.concat([...partial, rest.subarray(0, nl)]), first);
      partial = [];
      first = false;
      rest = rest.subarray(nl + 1);
    }
    if (rest.length > 0) partial.push(rest);
  }
  if (partial.length > 0) yield decodeLine(Buffer.concat(partial), first);
}
