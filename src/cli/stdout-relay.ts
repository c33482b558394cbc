import { fstatSync } from 'node:fs';
import type { Readable } from 'node:stream';

/**
 * Workers' stdout, relayed by the primary a whole line at a time.
 *
 * Each worker writes its audit batches (up to 64 KiB) and process-log lines to
 * stdout with one write each. On a pipe or a socket (a container runtime's
 * log FIFO, `| tee`), the kernel keeps only writes of up to 4 KiB (PIPE_BUF)
 * whole: two workers' longer writes interleave mid-line, and log collectors
 * drop the torn records. Workers that write to a pipe of their own, read by the
 * primary and copied out here whole lines at a time, cannot tear each other's
 * lines. A regular file needs none of this (Linux serialises writes to one
 * open file), nor does a terminal.
 */
export function stdoutNeedsRelay(fd = 1): boolean {
  try {
    const stat = fstatSync(fd);
    return stat.isFIFO() || stat.isSocket();
  } catch {
    return false;
  }
}

/** A line longer than this (no newline yet) is written in parts rather than held without bound. */
// Well over the longest audit line (4 MiB of forwarded parameters, the query as sent, the subject).
export const MAX_HELD_LINE_BYTES = 16 * 1024 * 1024;

const NEWLINE = 0x0a;

/**
 * Joins one worker's output chunks into whole lines: `write` gets only text
 * that ends with a newline (several lines at once where a chunk held them).
 * Pure: the relay below feeds it a worker's stdout.
 */
export class LineJoiner {
  readonly #write: (lines: Buffer) => void;
  readonly #maxHeld: number;
  #held: Buffer[] = [];
  #heldBytes = 0;

  constructor(write: (lines: Buffer) => void, maxHeldBytes = MAX_HELD_LINE_BYTES) {
    this.#write = write;
    this.#maxHeld = maxHeldBytes;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const last = chunk.lastIndexOf(NEWLINE);
    if (last === -1) {
      this.#hold(chunk);
      return;
    }
    const lines = chunk.subarray(0, last + 1);
    this.#write(this.#held.length === 0 ? lines : Buffer.concat([...this.#held, lines]));
    this.#held = [];
    this.#heldBytes = 0;
    if (last + 1 < chunk.length) this.#hold(chunk.subarray(last + 1));
  }

  /** The worker's output ended: a last unterminated line is ended, so the next worker's starts a line. */
  end(): void {
    if (this.#heldBytes === 0) return;
    this.#write(Buffer.concat([...this.#held, Buffer.from('\n')]));
    this.#held = [];
    this.#heldBytes = 0;
  }

  #hold(part: Buffer): void {
    this.#held.push(part);
    this.#heldBytes += part.length;
    if (this.#heldBytes <= this.#maxHeld) return;
    this.#write(Buffer.concat(this.#held));
    this.#held = [];
    this.#heldBytes = 0;
  }
}

/**
 * Copies workers' stdout to the primary's whole lines at a time, through one
 * ordered queue (process.stdout) that the primary's own log goes through too
 * (`destination`), so no line is written into another. Bounded: when stdout
 * does not keep up (a stalled log reader; a full pipe makes Node queue the
 * write), every worker's pipe is paused until it drains, and workers then
 * wait on their own writes as they would on a full stdout. When the reader is
 * gone (EPIPE), output is read and dropped: the workers keep serving, as they
 * did writing to the closed pipe themselves.
 */
export class StdoutRelay {
  readonly #out: NodeJS.WritableStream & { readonly writableLength?: number };
  readonly #sources = new Set<Readable>();
  #paused = false;
  #gone = false;

  constructor(out: NodeJS.WritableStream = process.stdout) {
    this.#out = out;
    out.on('error', () => {
      this.#gone = true;
      this.#resumeAll();
    });
    out.on('drain', () => this.#resumeAll());
  }

  /** Whole lines (or the primary's log lines): written in order with everything else. */
  write(lines: Buffer | string): void {
    if (this.#gone) return;
    if (!this.#out.write(lines) && !this.#paused) {
      this.#paused = true;
      for (const source of this.#sources) source.pause();
    }
  }

  /** A pino destination for the primary's own log. */
  readonly destination = { write: (line: string): void => this.write(line) };

  /** Relays `from` (a worker's stdout) until it ends; settles once all of it is handed to stdout. */
  relay(from: Readable): Promise<void> {
    const joiner = new LineJoiner((lines) => this.write(lines));
    this.#sources.add(from);
    if (this.#paused) from.pause();
    return new Promise<void>((resolve) => {
      from.on('data', (chunk: Buffer) => joiner.push(chunk));
      const done = (): void => {
        if (!this.#sources.delete(from)) return;
        joiner.end();
        resolve();
      };
      from.once('end', done);
      from.once('error', done);
      from.once('close', done);
    });
  }

  /** Settles when what was handed to stdout is written (or stdout is gone): before the primary exits. */
  flushed(): Promise<void> {
    if (this.#gone || (this.#out.writableLength ?? 0) === 0) return Promise.resolve();
    // An empty write's callback runs once everything before it is out ('drain' comes only after a write
    // that went past the high-water mark: a shorter queue would be waited for forever), or on an error.
    return new Promise<void>((resolve) => void this.#out.write('', () => resolve()));
  }

  #resumeAll(): void {
    this.#paused = false;
    for (const source of this.#sources) source.resume();
  }
}
