/**
 * A label set as Prometheus and Loki print it, `{a="x", b="y"}` (names in
 * order): how Loki names a volume's series and orders equal volumes, and how
 * its query frontend orders entries with equal timestamps from different
 * streams. Values are quoted as JSON strings, which matches Go's quoting for
 * every printable character (the order of label sets with control characters
 * in their values may differ from Loki's; only ties depend on it).
 */
import { compareCodePoints } from './list-answers.ts';

export function labelSetString(labels: Readonly<Record<string, unknown>>): string {
  const names = Object.keys(labels).sort(compareCodePoints);
  return `{${names.map((n) => `${n}=${JSON.stringify(String(labels[n]))}`).join(', ')}}`;
}
