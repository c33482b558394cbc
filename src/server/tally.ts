/**
 * A prom-client `Counter` for the per-request path. Counts are kept as plain
 * numbers per label set and copied into the Counter when it is collected
 * (prom-client's documented `collect` hook, which runs on every scrape and
 * every cluster aggregation), so an increment is one Map lookup per label and
 * an addition. `Counter.inc` hashes and validates its labels on every call, three
 * calls per request (docs/performance.md).
 *
 * The Counter is what the registry exports: same text, same JSON, same order
 * of series as counting with `Counter.inc` directly (property-tested).
 */
import { Counter, type Registry } from 'prom-client';

interface Series<L extends string> {
  readonly labels: Readonly<Record<L, string>>;
  value: number;
}

/** One level per label name, keyed by the value (`undefined` when the label is left out); the last level holds the series. */
type Level<L extends string> = Map<string | undefined, Level<L> | Series<L>>;

export interface TalliedCounterConfig<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly registers: Registry[];
}

export class TalliedCounter<L extends string> {
  /** The registered metric; read it (or the registry), never `inc` it: the next collect replaces its values. */
  readonly counter: Counter<L>;
  readonly #names: readonly L[];
  /** Series by their label values, one map level per label name: no key string built per increment. */
  #root: Level<L> = new Map();
  /** The same series in first-seen order, for collect. */
  readonly #series: Series<L>[] = [];

  constructor(config: TalliedCounterConfig<L>) {
    const series = this.#series;
    this.#names = config.labelNames;
    let collecting = false;
    this.counter = new Counter<L>({
      name: config.name,
      help: config.help,
      labelNames: config.labelNames,
      registers: config.registers,
      collect() {
        collecting = true;
        try {
          this.reset();
        } finally {
          collecting = false;
        }
        for (const s of series) this.inc(s.labels, s.value);
      },
    });
    // A reset from outside (registry.resetMetrics()) zeroes the tally too, as it would a Counter.
    const reset = this.counter.reset.bind(this.counter);
    this.counter.reset = () => {
      if (!collecting) {
        series.length = 0;
        this.#root = new Map();
      }
      reset();
    };
  }

  inc(labels: Readonly<Record<L, string>>): void {
    const names = this.#names;
    let level = this.#root;
    const last = names.length - 1;
    for (let i = 0; i < last; i++) {
      const value = labels[names[i] as L] as string | undefined;
      let next = level.get(value) as Level<L> | undefined;
      if (next === undefined) level.set(value, (next = new Map()));
      level = next;
    }
    const value = last < 0 ? undefined : (labels[names[last] as L] as string | undefined);
    const s = level.get(value) as Series<L> | undefined;
    if (s !== undefined) {
      s.value++;
      return;
    }
    for (const name in labels) {
      if (!this.#names.includes(name)) throw new Error(`Added label "${name}" is not included in initial labelset: ${JSON.stringify(this.#names)}`);
    }
    const created: Series<L> = { labels: { ...labels }, value: 1 };
    level.set(value, created);
    this.#series.push(created);
  }
}
