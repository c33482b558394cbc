// upstreamHeaders: what the gateway forwards of the client's headers (bypass suite, e2e/bypass).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { ResolvedUpstream } from '../../src/config/load.ts';
import type { Decision } from '../../src/policy/decision.ts';
import { policyHeaderNames } from '../../src/policy/engine.ts';
import { startUpstream, testApp, testConfig } from './helpers.ts';
import { downstreamHeaders, filteredDownstreamHeaders, upstreamHeaders } from '../../src/server/upstream-headers.ts';

const upstream = { headers: { 'X-Upstream-Key': 'configured' }, forwardAuthorization: false } as unknown as ResolvedUpstream;
const decision: Decision = { allow: true, reason: 't', unrestricted: false, selectors: [[{ name: 'namespace', op: '=', value: 'a' }]], headers: { 'X-Scope-OrgID': 'tenant-a', 'X-Policy-Tenant': 'p' } };

describe('upstreamHeaders', () => {
  it('owned, policy and configured header names spelt with underscores are not forwarded', () => {
    const out = upstreamHeaders(
      { x_scope_orgid: 'tenant-b', 'x-prom_label_policy': 'tenant-b:%7B%7D', x_policy_tenant: 'evil', x_upstream_key: 'evil', x_custom: 'kept' },
      upstream,
      decision,
    );
    expect(out).toEqual({ 'x-upstream-key': 'configured', 'x-scope-orgid': 'tenant-a', 'x-policy-tenant': 'p', x_custom: 'kept' });
  });

  it("Loki's internal X-Loki-Disable-Pipeline-Wrappers is not forwarded; Grafana's X-Loki-Response-Encoding-Flags is", () => {
    const out = upstreamHeaders({ 'x-loki-disable-pipeline-wrappers': 'true', 'x-loki-response-encoding-flags': 'categorize-labels' }, upstream, decision);
    expect(out['x-loki-disable-pipeline-wrappers']).toBeUndefined();
    expect(out['x-loki-response-encoding-flags']).toBe('categorize-labels');
  });

  it("Loki's X-Loki-Query-Limits-Context (Grafana's copy of the whole, unrewritten query) is not forwarded from restricted subjects; admins' is", () => {
    const context = JSON.stringify({ expr: '{service_name="api"}', from: '2026-01-01T00:00:00Z', to: '2026-01-01T01:00:00Z' });
    for (const name of ['X-Loki-Query-Limits-Context', 'x_loki_query_limits_context']) {
      expect(upstreamHeaders({ [name]: context }, upstream, decision)).not.toHaveProperty(name.toLowerCase());
    }
    const admin: Decision = { allow: true, reason: 't', unrestricted: true, selectors: [], headers: {} };
    expect(upstreamHeaders({ 'x-loki-query-limits-context': context }, upstream, admin)['x-loki-query-limits-context']).toBe(context);
  });

  it("Tempo's X-Span-Matcher (trace redaction into placeholders a policy could keep) is not forwarded from restricted subjects; admins' is", () => {
    for (const name of ['X-Span-Matcher', 'x_span_matcher']) {
      expect(upstreamHeaders({ [name]: '{resource.service.name="web"}' }, upstream, decision)).not.toHaveProperty(name.toLowerCase());
    }
    const admin: Decision = { allow: true, reason: 't', unrestricted: true, selectors: [], headers: {} };
    expect(upstreamHeaders({ 'x-span-matcher': '{resource.service.name="web"}' }, upstream, admin)['x-span-matcher']).toBe('{resource.service.name="web"}');
  });

  it('Content-Encoding and Content-Type are not forwarded: the gateway sends its own re-encoding of the body, under its own type', () => {
    // Go's mime.ParseMediaType refuses a parameter repeated with another value, and ParseForm then reads no body (Fastify took it as a form).
    const out = upstreamHeaders({ 'content-encoding': 'gzip', content_encoding: 'gzip', 'content-type': 'application/x-www-form-urlencoded; charset=a; charset=b' }, upstream, decision);
    expect(out['content-encoding']).toBeUndefined();
    expect(out['content_encoding']).toBeUndefined();
    expect(out['content-type']).toBeUndefined();
  });

  it('headers the client\'s Connection header lists are hop-by-hop: not forwarded; owned ones stay the policy\'s', () => {
    const out = upstreamHeaders({ connection: 'keep-alive, X-Hop ,x-scope-orgid', 'x-hop': 'h', 'keep-alive': 'timeout=5', 'x-scope-orgid': 'tenant-b', 'x-kept': 'v' }, upstream, decision);
    expect(out['x-hop']).toBeUndefined();
    expect(out['keep-alive']).toBeUndefined();
    expect(out['x-scope-orgid']).toBe('tenant-a');
    expect(out['x-kept']).toBe('v');
    const listed = upstreamHeaders({ connection: ['close', 'x-a'], 'x-a': '1', 'x-b': '2' } as never, upstream, decision);
    expect([listed['x-a'], listed['x-b']]).toEqual([undefined, '2']);
  });

  it('path and method overrides some proxies honour are never forwarded (the gateway enforced this path and method)', () => {
    const out = upstreamHeaders({ 'x-original-url': '/api/v1/admin/tsdb/delete_series', 'X-Rewrite-URL': '/federate', 'x-http-method-override': 'DELETE', 'x-original-method': 'PUT', 'x-http-method': 'PUT', 'x-method-override': 'PUT', 'x-kept': 'v' }, upstream, decision);
    expect(Object.keys(out).filter((h) => h.includes('url') || h.includes('method'))).toEqual([]);
    expect(out['x-kept']).toBe('v');
  });

  it('upstreams[].dropHeaders: the configured names are never forwarded, in any case or spelt with underscores; other headers are', () => {
    const proxied = { ...upstream, dropHeaders: ['X-Forwarded-User', 'x-webauth-user'] } as unknown as ResolvedUpstream;
    const client = { 'x-forwarded-user': 'admin', X_Forwarded_User: 'admin', 'X-WEBAUTH-USER': 'admin', 'x-webauth_user': 'admin', 'x-forwarded-for': '10.0.0.1', 'x-kept': 'v' };
    const out = upstreamHeaders(client, proxied, decision);
    expect(Object.keys(out).filter((h) => h.includes('user'))).toEqual([]);
    expect(out['x-forwarded-for']).toBe('10.0.0.1');
    expect(out['x-kept']).toBe('v');
    // Without the setting they go through: the list is what makes the difference.
    expect(upstreamHeaders(client, upstream, decision)['x-forwarded-user']).toBe('admin');
  });

  it('credential headers (Grafana ID tokens, configured API-key headers) are never forwarded', () => {
    const out = upstreamHeaders({ 'x-grafana-id': 'eyJ…', 'x-id-token': 'eyJ…', 'x-api-key': 'secret', 'x_api_key': 'secret', 'x-kept': 'v' }, upstream, decision, ['X-API-Key']);
    for (const h of ['x-grafana-id', 'x-id-token', 'x-api-key', 'x_api_key']) expect(out[h], h).toBeUndefined();
    expect(out['x-kept']).toBe('v');
  });

  it('the upstream answer\'s hop-by-hop headers (and those its Connection lists) are not relayed to the client', () => {
    const relayed = downstreamHeaders({
      connection: 'keep-alive, X-Upstream-Hop',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      trailer: 'x-checksum',
      upgrade: 'h2c',
      'x-upstream-hop': 'h',
      'content-type': 'application/json',
      'content-length': '2',
    });
    expect(relayed).toEqual({ 'content-type': 'application/json', 'content-length': '2' });
  });
});

describe('redirects are not relayed', () => {
  it('Location (the upstream\'s own address) is left out of every relayed answer', () => {
    expect(downstreamHeaders({ 'content-type': 'text/html', Location: 'http://prometheus.internal:9090/graph' })).toEqual({ 'content-type': 'text/html' });
    expect(filteredDownstreamHeaders({ location: 'http://prometheus.internal:9090/x', 'x-kept': 'v' })).toEqual({ 'x-kept': 'v' });
  });
  it("a POST is forwarded with the gateway's form Content-Type, whatever parameters the client's had; a GET with none", async () => {
    // Fastify reads the body by media type alone; Go's mime.ParseMediaType refuses a parameter repeated with another value and
    // ParseForm then reads no body (Prometheus /api/v1/labels would answer every label name).
    const up = await startUpstream();
    const t = await testApp(testConfig(up.url));
    try {
      for (const ct of ['application/x-www-form-urlencoded; charset=a; charset=b', 'APPLICATION/X-WWW-FORM-URLENCODED;a=1;A=2', 'application/x-www-form-urlencoded; charset=utf-16']) {
        const res = await t.app.inject({ method: 'POST', url: '/prometheus/api/v1/labels', headers: { authorization: 'Bearer alice', 'content-type': ct }, payload: 'match[]=up' });
        expect(res.statusCode).toBe(200);
        expect(up.requests.at(-1)!.headers['content-type']).toBe('application/x-www-form-urlencoded');
        expect(up.requests.at(-1)!.params.getAll('match[]')).toEqual(['up{namespace=~"team-a-.*"}']);
      }
      const res = await t.app.inject({ url: '/prometheus/api/v1/labels?match[]=up', headers: { authorization: 'Bearer alice', 'content-type': 'application/x-www-form-urlencoded; charset=a; charset=b' } });
      expect(res.statusCode).toBe(200);
      expect(up.requests.at(-1)!.headers['content-type']).toBeUndefined();
    } finally {
      await t.app.close();
      await up.close();
    }
  });
  it('a filtered route whose upstream compresses anyway (Accept-Encoding: identity ignored) answers 502, never the compressed unfiltered body', async () => {
    const secret = JSON.stringify({ status: 'success', data: ['team-a-web', 'team-b-secret'] });
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync(secret)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const t = await testApp(testConfig(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
    try {
      const res = await t.app.inject({ url: '/prometheus/api/v1/label/namespace/values', headers: { authorization: 'Bearer alice', 'accept-encoding': 'gzip' } });
      expect(res.statusCode).toBe(502);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.rawPayload.includes(gzipSync(secret).subarray(10, 30))).toBe(false);
    } finally {
      await t.app.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
  it('a redirect on a filtered route is a 502, its unfiltered body never relayed', async () => {
    const up = await startUpstream();
    up.answer = () => [302, JSON.stringify({ status: 'success', data: ['team-a-web', 'team-b-secret'] })];
    const t = await testApp(testConfig(up.url));
    try {
      const res = await t.app.inject({ url: '/prometheus/api/v1/label/namespace/values', headers: { authorization: 'Bearer alice' } });
      expect(up.requests).toHaveLength(1);
      expect(res.statusCode).toBe(502);
      expect(res.body).not.toContain('team-b-secret');
    } finally {
      await t.app.close();
      await up.close();
    }
  });
});

describe('filteredDownstreamHeaders', () => {
  it('a filtered answer keeps the upstream\'s headers but not the length and encoding of bytes the client does not get, nor hop-by-hop ones', () => {
    const up = { 'content-type': 'application/json', 'content-length': '1234', 'Content-Encoding': 'gzip', date: 'd', connection: 'x-hop', 'x-hop': '1', 'x-kept': 'v' };
    expect(filteredDownstreamHeaders(up)).toEqual({ 'content-type': 'application/json', date: 'd', 'x-kept': 'v' });
    // Without hop-by-hop headers too (downstreamHeaders returns the same object then).
    expect(filteredDownstreamHeaders({ 'content-length': '5', vary: 'Accept-Encoding' })).toEqual({ vary: 'Accept-Encoding' });
  });
});

describe('header names any team or the admins set are owned for every request', () => {
  it('policyHeaderNames: the names of data.lbac teams and admins headers, as header keys', () => {
    const names = policyHeaderNames({ lbac: { admins: { headers: { 'X-Admin-Tenant': 'all' } }, teams: { a: { headers: { 'X-Scope-OrgID': 'a' } }, b: { headers: { 'X-Tenant_Id': 'b' } }, c: {} } } });
    expect([...names].sort()).toEqual(['x-admin-tenant', 'x-scope-orgid', 'x-tenant-id']);
    expect(policyHeaderNames({ other: { teams: { a: { headers: { X: '1' } } } } }).size).toBe(0);
  });

  it("a client's copy of another team's tenant header never reaches the upstream, also after the teams change", async () => {
    const up = await startUpstream();
    const config = testConfig(
      up.url,
      `  team-b: { groups: [team-b], selectors: [{ namespace: "team-b-api" }], headers: { X-Tenant-Id: tenant-b } }
  team-c: { groups: [team-c], selectors: [{ namespace: "team-c-api" }] }
`,
    );
    const t = await testApp(config);
    try {
      const send = async (token: string, headers: Record<string, string>) => {
        const res = await t.app.inject({ url: '/prometheus/api/v1/query?query=up', headers: { authorization: `Bearer ${token}`, ...headers } });
        expect(res.statusCode).toBe(200);
        return up.requests.at(-1)!.headers;
      };
      // alice (team-a) sets only X-Scope-OrgID; X-Tenant-Id is team-b's, THANOS-TENANT is Thanos' own.
      const got = await send('alice', { 'x-tenant-id': 'tenant-b', x_tenant_id: 'tenant-b', 'thanos-tenant': 'tenant-b', 'x-kept': 'v' });
      expect(got['x-tenant-id']).toBeUndefined();
      expect(got['x_tenant_id']).toBeUndefined();
      expect(got['thanos-tenant']).toBeUndefined();
      expect(got['x-scope-orgid']).toBe('tenant-a');
      expect(got['x-kept']).toBe('v');
      // New data (a reload, a bundle) brings new names.
      const engine = t.holder.engine!;
      engine.setData({ lbac: { ...config.policyData, teams: { ...config.policyData.teams, 'team-d': { ...config.policyData.teams['team-b']!, headers: { 'X-Other-Tenant': 'd' } } } } });
      const after = await send('alice', { 'x-other-tenant': 'tenant-d', 'x-tenant-id': 'tenant-b' });
      expect(after['x-other-tenant']).toBeUndefined();
      expect(after['x-tenant-id']).toBeUndefined();
      // The last teams that set them are removed (tenants decommissioned, their data still in the backend):
      // the names stay owned, so a client cannot choose those tenants now.
      const { 'team-b': _b, ...rest } = config.policyData.teams;
      engine.setData({ lbac: { ...config.policyData, teams: rest } });
      const removed = await send('alice', { 'x-other-tenant': 'tenant-d', 'x-tenant-id': 'tenant-b' });
      expect(removed['x-other-tenant']).toBeUndefined();
      expect(removed['x-tenant-id']).toBeUndefined();
      expect(removed['x-scope-orgid']).toBe('tenant-a');
    } finally {
      await t.app.close();
      await up.close();
    }
  });
});
