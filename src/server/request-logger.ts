/**
 * Fastify `childLoggerFactory`: a request's logger that becomes a pino child
 * only when the request logs something at an enabled level. Most requests log
 * nothing at `warn`, and pino's `child()` (which serialises the bindings) was
 * ≈ 1.5 µs of every request in the gateway's CPU profile (docs/performance.md).
 * A call at a disabled level costs one comparison, as on a pino logger.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, Logger } from 'pino';

type LogFn = (...args: unknown[]) => void;

class LazyRequestLogger {
  readonly #parent: Logger;
  readonly #bindings: Bindings;
  readonly #opts: ChildLoggerOptions;
  #child: Logger | undefined;

  constructor(parent: Logger, bindings: Bindings, opts: ChildLoggerOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#opts = opts;
  }

  #real(): Logger {
    return (this.#child ??= this.#parent.child(this.#bindings, this.#opts));
  }

  /** Whether `level` would be written: the child decides once it exists; before that, the level it would get. */
  #enabled(level: string): boolean {
    if (this.#child !== undefined) return this.#child.isLevelEnabled(level);
    const values = this.#parent.levels.values;
    const threshold = this.#opts.level === undefined ? this.#parent.levelVal : (values[this.#opts.level] ?? Number.POSITIVE_INFINITY);
    return (values[level] ?? Number.POSITIVE_INFINITY) >= threshold;
  }

  #log(level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace', args: unknown[]): void {
    if (this.#enabled(level)) (this.#real()[level] as LogFn)(...args);
  }

  get level(): string {
    return this.#child?.level ?? this.#opts.level ?? this.#parent.level;
  }

  set level(level: string) {
    this.#real().level = level;
  }

  isLevelEnabled(level: string): boolean {
    return this.#enabled(level);
  }

  fatal(...args: unknown[]): void {
    this.#log('fatal', args);
  }
  error(...args: unknown[]): void {
    this.#log('error', args);
  }
  warn(...args: unknown[]): void {
    this.#log('warn', args);
  }
  info(...args: unknown[]): void {
    this.#log('info', args);
  }
  debug(...args: unknown[]): void {
    this.#log('debug', args);
  }
  trace(...args: unknown[]): void {
    this.#log('trace', args);
  }
  silent(): void {}

  child(bindings: Bindings, opts?: ChildLoggerOptions): Logger {
    return this.#real().child(bindings, opts);
  }
}

export function lazyRequestLogger(logger: FastifyBaseLogger, bindings: Bindings, opts: ChildLoggerOptions): FastifyBaseLogger {
  return new LazyRequestLogger(logger as unknown as Logger, bindings, opts) as unknown as FastifyBaseLogger;
}
