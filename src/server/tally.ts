/**
 * A prom-client `Counter` for the per-request path. Counts are kept as plain
 * numbers per label set and copied into the Counter when it is collected
 * (prom-client's documented `collect` hook, which runs on every scrape and
 * every cluster aggregation), so an increment is a key, one Map lookup and an
 * addition. `Counter.inc` hashes and validates its labels on every call, three
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
  readonly #series = new Map<string, Series<L>>();

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
        for (const s of series.values()) this.inc(s.labels, s.value);
      },
    });
    // A reset from outside (registry.resetMetrics()) zeroes the tally too, as it would a Counter.
    const reset = this.counter.reset.bind(this.counter);
    this.counter.reset = () => {
      if (!collecting) series.clear();
      reset();
    };
  }

  inc(labels: Readonly<Record<L, string>>): void {
    // Length-prefixed values: no two label sets share a key, whatever their characters.
    let key = '';
    for (const name of this.#names) {
      const value = labels[name] as string | undefined;
      key += value === undefined ? '-' : `${value.length}:${value}`;
    }
    const s = this.#series.get(key);
    if (s !== undefined) {
      s.value++;
      return;
    }
    for (const name in labels) {
      if (!this.#names.includes(name)) throw new Error(`Added label "${name}" is not included in initial labelset: ${JSON.stringify(this.#names)}`);
    }
    this.#series.set(key, { labels: { ...labels }, value: 1 });
  }
}
