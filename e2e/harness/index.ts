// The e2e harness: real processes, no mocks.
export * from './tools.ts';
export * from './ports.ts';
export * from './process.ts';
export * from './prometheus.ts';
export * from './tokens.ts';
export * from './gateway.ts';
export * from './counting-proxy.ts';
export * from './http.ts';
export * from './eventually.ts';
