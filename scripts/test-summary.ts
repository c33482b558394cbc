// Prints the one closing line CI reads — "N passed, N failed" — from vitest's
// JSON report plus `opa test`'s count line, and exits non-zero on any failure
// or when no test ran at all.
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';

/** The first non-empty line of a failure message, cut short: enough to name the failure. */
function firstLine(message: string | undefined): string {
  const line = (message ?? '').split('\n').find((l) => l.trim() !== '') ?? '(no message)';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line.trim();
}

const [vitestJson, opaTxt] = process.argv.slice(2);
let passed = 0;
let failed = 0;
const problems: string[] = [];

if (vitestJson !== undefined && existsSync(vitestJson)) {
  const r = JSON.parse(readFileSync(vitestJson, 'utf8')) as {
    numPassedTests: number;
    numFailedTests: number;
    numTotalTestSuites: number;
    testResults?: {
      status: string;
      name: string;
      message?: string;
      assertionResults?: { status: string; fullName: string; failureMessages?: string[] }[];
    }[];
  };
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  // A suite that failed to load (import error, hook failure) has no failed tests: count it.
  for (const s of r.testResults ?? []) {
    const file = relative(process.cwd(), s.name);
    const failedTests = (s.assertionResults ?? []).filter((a) => a.status === 'failed');
    if (s.status === 'failed' && failedTests.length === 0) {
      failed += 1;
      problems.push(`suite failed: ${file}: ${firstLine(s.message)}`);
    }
    // Named again here, next to the count, because CI keeps only the end of the output.
    for (const a of failedTests) problems.push(`failed: ${file} > ${a.fullName}: ${firstLine(a.failureMessages?.[0])}`);
  }
} else problems.push('vitest produced no JSON report');

if (opaTxt !== undefined && existsSync(opaTxt)) {
  const m = /opa test: (\d+) passed, (\d+) failed/.exec(readFileSync(opaTxt, 'utf8'));
  if (m) {
    passed += Number(m[1]);
    failed += Number(m[2]);
  } else {
    failed += 1;
    problems.push('opa test did not report (see output above)');
  }
} else problems.push('opa test produced no output');

// Bounded: a broken setup can fail hundreds of tests, and the count line must stay in CI's tail.
const SHOWN = 40;
for (const p of problems.slice(0, SHOWN)) console.error(`[test] ${p}`);
if (problems.length > SHOWN) console.error(`[test] … and ${problems.length - SHOWN} more (the vitest output above has them all)`);
if (problems.length > 0 && failed === 0) failed = problems.length;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
