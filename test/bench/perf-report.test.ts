// bench/lib/perf-report.ts: what `make bench-profile` concludes from perf's
// output: sample weights, folding native frames into their JavaScript caller,
// kinds of code, and the gateway-minus-floor figures in µs per request.
import { describe, expect, it } from 'vitest';
import { diffProfiles, parsePerfScript, symbolKind } from '../../bench/lib/perf-report.ts';

// `perf script -F comm,tid,period,ip,sym`, shortened from a real profile of the gateway.
const SCRIPT = [
  'MainThread  8237     500000 ',
  '\t         1c7b45c Builtins_KeyedLoadIC_Megamorphic',
  "\t    7ff3fc175a4e JS:*'decisionAuditLine file:///srv/src/lbac/src/server/audit.ts:170:34",
  "\t    7ff3fc175b00 JS:*'flush file:///srv/src/lbac/src/server/plugins/audit.ts:115:20",
  '\t          405735 node::SpinEventLoopInternal',
  '',
  'MainThread  8237     500000 ',
  "\t    7ff3fc175a4e JS:*'decisionAuditLine file:///srv/src/lbac/src/server/audit.ts:170:34",
  '\t          405735 node::SpinEventLoopInternal',
  '',
  'MainThread  8237    1000000 ',
  '\tffffffff82200809 _raw_spin_unlock_irqrestore',
  '\tffffffff821ecc51 do_syscall_64',
  "\t    7ff3fc170000 JS:*'writevGeneric node:internal/stream_base_commons:121:23",
  '',
  '        V8Worker  8241    2000000 ',
  '\t          93b051 v8::internal::Scavenger::ScavengePage',
  '\t           2724a start_thread',
  '',
].join('\n');

describe('parsePerfScript', () => {
  it('weights each sample by its period, leaf frames as they are', () => {
    const leaf = parsePerfScript(SCRIPT, false);
    expect([...leaf.keys()].sort()).toEqual(
      ["JS:*'decisionAuditLine file:///srv/src/lbac/src/server/audit.ts:170:34", 'Builtins_KeyedLoadIC_Megamorphic', '_raw_spin_unlock_irqrestore', 'v8::internal::Scavenger::ScavengePage'].sort(),
    );
    expect(leaf.get('v8::internal::Scavenger::ScavengePage')).toBeCloseTo(50);
    expect(leaf.get('_raw_spin_unlock_irqrestore')).toBeCloseTo(25);
    expect(leaf.get('Builtins_KeyedLoadIC_Megamorphic')).toBeCloseTo(12.5);
  });

  it('folds a native leaf into the nearest JavaScript frame; a stack without one keeps its leaf', () => {
    const folded = parsePerfScript(SCRIPT, true);
    expect(folded.get("JS:*'decisionAuditLine file:///srv/src/lbac/src/server/audit.ts:170:34")).toBeCloseTo(25);
    expect(folded.get("JS:*'writevGeneric node:internal/stream_base_commons:121:23")).toBeCloseTo(25);
    expect(folded.get('v8::internal::Scavenger::ScavengePage')).toBeCloseTo(50);
    expect(folded.has('Builtins_KeyedLoadIC_Megamorphic')).toBe(false);
    expect([...folded.values()].reduce((a, b) => a + b, 0)).toBeCloseTo(100);
  });

  it('reads nothing from text without samples', () => {
    expect(parsePerfScript('', true).size).toBe(0);
    expect(parsePerfScript('\n\n', false).size).toBe(0);
  });
});

describe('symbolKind', () => {
  it.each([
    ["JS:*'audit file:///srv/src/lbac/src/server/plugins/audit.ts:217:19", 'src/server'],
    ["JS:*'x file:///w/src/rewrite/grammars/promql.js:1:1", 'src/rewrite'],
    ["JS:*'onHeaderValue /w/node_modules/undici/lib/dispatcher/client-h1.js:490:17", 'npm:undici'],
    ["JS:*' /w/node_modules/@fastify/reply-from/index.js:60:42", 'npm:@fastify/reply-from'],
    ["JS:*'clearBuffer node:internal/streams/writable:746:21", 'node:streams'],
    ["JS:*'end node:_http_outgoing:1143:45", 'node:_http_outgoing'],
    ['JS:wasm-function[20]-20-turbofan', 'wasm'],
    ["RegExp.> src: '^Bearer +([A-Za-z0-9]+=*) *$' flags: 'i'", 'regexp'],
    ['Builtins_LoadIC_Megamorphic', 'v8 builtins'],
    ['v8::internal::String::WriteToFlat2<unsigned char>', 'v8 runtime'],
    ['node::StreamBase::Writev', 'node native'],
    ['llhttp__internal__run', 'node native'],
    ['tcp_sendmsg_locked', 'kernel, libc'],
  ])('%s is %s', (symbol, kind) => {
    expect(symbolKind(symbol)).toBe(kind);
  });
});

describe('diffProfiles', () => {
  it('scales shares by CPU per request and sorts by what the gateway adds', () => {
    const gateway = { shares: new Map([['a', 50], ['b', 25], ['c', 25]]), cpuPerRequest: 120 };
    const floor = { shares: new Map([['a', 80], ['c', 20]]), cpuPerRequest: 80 };
    expect(diffProfiles(gateway, floor)).toEqual([
      { key: 'b', gateway: 30, passthrough: 0, added: 30 },
      { key: 'c', gateway: 30, passthrough: 16, added: 14 },
      { key: 'a', gateway: 60, passthrough: 64, added: -4 },
    ]);
  });

  it('groups by a key function, summing within a group', () => {
    const gateway = { shares: new Map([['Builtins_A', 10], ['Builtins_B', 10], ['tcp_x', 80]]), cpuPerRequest: 100 };
    const floor = { shares: new Map([['tcp_x', 100]]), cpuPerRequest: 50 };
    const rows = diffProfiles(gateway, floor, symbolKind);
    expect(rows).toEqual([
      { key: 'kernel, libc', gateway: 80, passthrough: 50, added: 30 },
      { key: 'v8 builtins', gateway: 20, passthrough: 0, added: 20 },
    ]);
  });
});
