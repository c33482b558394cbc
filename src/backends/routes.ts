import type { GatewayError } from '../errors.ts';
import type { SelectorPolicy } from '../rewrite/matcher.ts';
import type { RewriteLimits } from '../rewrite/rewriter.ts';
import type { ResponseFilter } from './filters.ts';
import type { Params } from './form-params.ts';

export type BackendKind = 'prometheus' | 'loki' | 'tempo';
export type HttpMethod = 'GET' | 'POST';

/** Rewrites every value of one parameter under a policy; returns the values to forward. */
export type ParamRewrite = (values: readonly string[], policy: SelectorPolicy, limits: RewriteLimits) => string[];

/** A request parameter that carries a query or selectors and must be enforced. */
export interface EnforcedParam {
  readonly name: string;
  /** Missing → 400 in the backend's words. */
  readonly required: boolean;
  /** May appear several times (e.g. match[]); otherwise a repeat is ambiguous → 400. */
  readonly multiple: boolean;
  readonly rewrite: ParamRewrite;
  /** The backend's message when the parameter is missing. */
  readonly missingMessage: string;
  /**
   * False when the rewrite never sends this client value on (it is replaced by the policy's
   * alone): checks of what the upstream would read (refuseTraceLevelIntrinsics) skip it.
   * Absent: every value is sent on, rewritten.
   */
  readonly forwardsClientValue?: (value: string) => boolean;
}

/**
 * One row of a backend's route table: data, not code paths. The server registers
 * exactly these routes; anything else is 404 and never forwarded.
 */
export interface RouteSpec {
  /** Stable name used in decisions (`request.endpoint`), logs and metrics. */
  readonly endpoint: string;
  /** Path relative to the upstream mount; `:name` segments are path parameters. */
  readonly path: string;
  readonly methods: readonly HttpMethod[];
  /** Query-bearing parameters (query string or form body). */
  readonly enforced: readonly EnforcedParam[];
  /**
   * Parameters never forwarded for restricted subjects: ones that make the
   * upstream page or select before the response filter sees the whole answer
   * (its page tokens would count and fingerprint other tenants' entries).
   */
  readonly droppedParams?: readonly string[];
  /**
   * Tempo: parameters that read facts of the whole trace (the search's
   * `minDuration`/`maxDuration`), refused for restricted subjects where the
   * upstream sets `refuseTraceLevelIntrinsics` (traceLevelIntrinsicsRefusal).
   */
  readonly traceLevelParams?: readonly string[];
  /**
   * For restricted subjects: the oldest backend release whose handler reads the
   * enforced parameter (src/backends/versions.ts). Older ones, and versions
   * that cannot be compared, are refused (403) rather than answered for the
   * whole tenant. The version is the upstream's `version` setting, else its
   * buildinfo (RouteTable.buildinfoPath), asked once every few minutes.
   */
  readonly minVersion?: string;
  /**
   * For restricted subjects: parameters the response filter applies instead of
   * the upstream. They are not forwarded; their first values reach the filter as
   * FilterContext.held (Prometheus rules' `exclude_alerts`: a rule's state under
   * the policy is computed from the alerts the policy keeps, so they are fetched).
   */
  readonly heldParams?: readonly string[];
  /**
   * Checks the held parameters as the upstream would have (restricted
   * subjects): an error message (400 in the backend's format) or undefined.
   */
  readonly heldParamsProblem?: (held: Readonly<Record<string, string>>) => string | undefined;
  /**
   * For restricted subjects: the only parameters forwarded besides the enforced
   * ones. For routes whose answer the gateway filters, where a parameter the
   * upstream reads could make it test other teams' data (Tempo's trace-by-id
   * `q`, which Tempo evaluates over every span of the trace).
   */
  readonly allowedParams?: readonly string[];
  /**
   * Loki with `policyEnforcement: header`: its label-based access control
   * enforces X-Prom-Label-Policy on this endpoint (queries, tail, label values,
   * volume), so parameters are checked, not rewritten. On every other route the
   * gateway rewrites as in "rewrite" mode, and sends the header too.
   */
  readonly headerEnforced?: boolean;
  /**
   * For restricted subjects, before enforcement: parameters the route derives
   * from the client's own ones so that the policy's matchers change only which
   * data is read, not how it is grouped (Loki volume's `targetLabels`).
   */
  readonly completeParams?: (params: Params, limits: RewriteLimits) => void;
  /**
   * Path parameters that must be validated before they are re-encoded into the
   * upstream path (e.g. a label name). Returns an error message or undefined.
   */
  readonly validatePathParam?: (name: string, value: string) => string | undefined;
  /**
   * For restricted subjects, after validatePathParam: path parameters the
   * upstream cannot answer under the policy (Tempo's tag values of an
   * unscoped attribute, listed from every span whatever the query). Returns
   * an error message (400, rewrite_unsupported) or undefined.
   */
  readonly restrictedPathParam?: (name: string, value: string) => string | undefined;
  /**
   * For restricted subjects, before restrictedPathParam: a path parameter the
   * upstream cannot answer under the policy as sent, but can as the union of
   * the answers for these values (Tempo's tag values of an unscoped
   * attribute: those of `resource.<key>` and of `span.<key>`). The request
   * is then asked once per value (a fan-out, RouteSpec.fanOut's merge) and
   * never with the value as sent. Undefined: the value as sent.
   */
  readonly expandPathParam?: (name: string, value: string) => readonly string[] | undefined;
  /** Filters the upstream's JSON answer where the query cannot enforce (not applied for unrestricted subjects). */
  readonly responseFilter?: ResponseFilter;
  /**
   * Whether this request's answer needs the route's filter; absent: always. A
   * filtered answer is read whole and re-encoded; one the filter could not
   * change is streamed as the upstream sent it.
   */
  readonly filters?: (policy: SelectorPolicy, pathParams: Readonly<Record<string, string>>) => boolean;
  /**
   * Filters the upstream's raw 200 answer in whatever representation it came in
   * (e.g. Tempo traces as JSON or protobuf, as the client's Accept asked). Used
   * instead of `responseFilter` when present; not applied for unrestricted subjects.
   */
  readonly rawResponseFilter?: RawResponseFilter;
  /**
   * Where the answer is filtered (restricted subjects): what the client gets
   * instead of the upstream's non-2xx, non-3xx answer with this status, whose
   * body is then not relayed. A GatewayError is rendered in the backend's
   * format. Undefined (or absent): the upstream's answer, as it wrote it.
   */
  readonly upstreamErrorAnswer?: (status: number) => RawFilteredResponse | GatewayError | undefined;
  /**
   * Served as a WebSocket (GET with an upgrade only, e.g. Loki's live tail): identity,
   * decision and `enforced` are checked before the upgrade completes, then the
   * connection is relayed to the upstream (src/server/plugins/websocket.ts).
   */
  readonly websocket?: boolean;
  /**
   * A second upstream request the response filter needs, made before the main
   * one with the same headers and credentials; its JSON answer reaches the
   * filter as `ctx.lookup` (e.g. the metric names the policy can see, to filter
   * /api/v1/metadata). Only for restricted subjects; if it fails, so does the
   * request (502), never an unfiltered answer.
   */
  readonly lookup?: LookupSpec;
  /**
   * An enforced parameter whose rewritten values are alternatives, not a list:
   * a policy that one value cannot express (Loki's one `query` selector under
   * alternatives that do not merge) gives one value per alternative the request
   * can reach. The gateway then asks the upstream once per value (GET, the same
   * headers and other parameters) and answers what `merge` makes of the parts,
   * filtered as the route's answer would be. A WebSocket route opens one
   * upstream connection per value and relays each one's messages as they come.
   */
  readonly fanOut?: FanOutSpec;
}

export interface FanOutSpec {
  readonly param: string;
  /**
   * HTTP routes: the parts' parsed JSON answers (all 2xx), in value order, and
   * the enforced parameters (every value of `param`) → the answer. Throws →
   * 502 (a GatewayError: its own status). Absent on WebSocket routes.
   */
  readonly merge?: (answers: readonly unknown[], params: Params) => unknown;
  /**
   * Sets, once for all parts, parameters whose default the upstream computes per
   * request (e.g. Prometheus' evaluation `time`, "now"), so every part answers
   * for the same instant. `nowMs`: the request's time.
   */
  readonly pin?: (params: Params, nowMs: number) => void;
}

/** An enforced upstream request: its path (relative to the upstream) and parameters under a policy. */
export interface LookupSpec {
  readonly path: string;
  /** `nowSeconds`: the request's time, so the parameters stay a pure function. */
  readonly params: (policy: SelectorPolicy, nowSeconds: number) => URLSearchParams;
  /**
   * How long an answer may be reused by requests under the same policy and
   * tenant headers (src/server/lookup-cache.ts); absent: asked per request.
   * Never reused for upstreams that get the client's Authorization.
   */
  readonly maxAgeMs?: number;
}

/** What response filters get besides the answer. */
export interface FilterContext {
  readonly policy: SelectorPolicy;
  readonly pathParams: Readonly<Record<string, string>>;
  /** The route's lookup answer (parsed JSON), when the route has one. */
  readonly lookup?: unknown;
  /** RouteSpec.heldParams the client sent: name → first value. */
  readonly held?: Readonly<Record<string, string>>;
  /**
   * The upstream's `refuseTraceLevelIntrinsics` (Tempo): facts computed over
   * whole traces (root span, trace start and duration) are withheld from
   * answers too. Absent: false.
   */
  readonly refuseTraceLevelIntrinsics?: boolean;
}

/** What a raw response filter answers: the status, content type and body the client gets. */
export interface RawFilteredResponse {
  readonly status: number;
  readonly contentType: string;
  readonly body: Uint8Array | string;
}

/**
 * A pure filter over the upstream's raw bytes and Content-Type. Throwing means
 * the answer could not be understood: the gateway answers 502, never the raw body.
 */
export type RawResponseFilter = (raw: Uint8Array, contentType: string, ctx: FilterContext) => RawFilteredResponse;

/** Decodes answers as JSON.parse needs them (malformed bytes become U+FFFD, as in Go's encoding/json). Stateless per call. */
const utf8 = new TextDecoder();

/** A JSON response filter as a raw one: parse, filter, re-serialise (a body that is not JSON throws → 502). */
export function jsonResponseFilter(filter: ResponseFilter): RawResponseFilter {
  return (raw, _contentType, ctx) => ({
    status: 200,
    contentType: 'application/json',
    body: JSON.stringify(filter(JSON.parse(utf8.decode(raw)), ctx)),
  });
}

/** The filter that applies to a route's answer, if any: a raw filter wins over a JSON one. */
export function responseFilterOf(route: RouteSpec): RawResponseFilter | undefined {
  if (route.rawResponseFilter !== undefined) return route.rawResponseFilter;
  if (route.responseFilter === undefined) return undefined;
  let raw = jsonFilters.get(route.responseFilter);
  if (raw === undefined) jsonFilters.set(route.responseFilter, (raw = jsonResponseFilter(route.responseFilter)));
  return raw;
}

/** Each JSON filter's raw form, made once (asked for on every filtered request). */
const jsonFilters = new WeakMap<ResponseFilter, RawResponseFilter>();

export interface RouteTable {
  readonly kind: BackendKind;
  readonly routes: readonly RouteSpec[];
  /** Where the backend reports its version (`{"version": …}`), for RouteSpec.minVersion. */
  readonly buildinfoPath?: string;
}

/** Build the upstream path from the route pattern, percent-encoding each path parameter. */
export function upstreamPath(route: RouteSpec, params: Readonly<Record<string, string>>): string {
  const template = pathTemplateOf(route.path);
  // Most routes have no parameter.
  if (template.length === 1) return route.path;
  let out = template[0]!;
  for (let i = 1; i < template.length; i += 2) {
    const name = template[i]!;
    const v = params[name];
    if (v === undefined) throw new Error(`route ${route.endpoint}: missing path parameter ${name}`);
    // Callers refuse these first (pathParamProblem); never build a path that is not the route's.
    if (holdsDotSegment(v)) throw new Error(`route ${route.endpoint}: path parameter ${name} holds a dot segment`);
    out += encodeURIComponent(v) + template[i + 1]!;
  }
  return out;
}

/** A route pattern split once into literal text and parameter names: [text, name, text, name, …, text]. */
const pathTemplates = new Map<string, readonly string[]>();
function pathTemplateOf(pattern: string): readonly string[] {
  let template = pathTemplates.get(pattern);
  if (template === undefined) pathTemplates.set(pattern, (template = pattern.split(/:([A-Za-z_][A-Za-z0-9_]*)/)));
  return template;
}

/**
 * A label name in a path (`/label/:name/values`) for Prometheus and Loki: not
 * empty, bounded, no NUL or line break, and no `/`: their routers answer a
 * decoded `/` with a redirect to another path (Prometheus' UTF-8 names are
 * sent `U__`-escaped).
 */
export const labelNamePathParamProblem = (_name: string, v: string): string | undefined =>
  v.length === 0 || v.length > 1024 || /[\0\r\n/]/.test(v) ? `invalid label name ${JSON.stringify(v)}` : undefined;

/**
 * The value, or a part of it between slashes, is `.` or `..`. A parameter is
 * sent percent-encoded (`%2F`), but a proxy between the gateway and the
 * backend that decodes and normalises paths (nginx with a URI in `proxy_pass`)
 * would resolve `a%2F..%2F..` and send another route's path. Backslashes count
 * as slashes: URL parsers of special schemes read them so.
 */
const holdsDotSegment = (v: string): boolean => v.split(/[/\\]/).some((segment) => segment === '.' || segment === '..');

/**
 * Why a path parameter cannot be forwarded, or undefined. `.` and `..` (also
 * sent as %2E, which the router decodes) would be dot segments in the upstream
 * URL, and URL parsing removes those: the request would reach another upstream
 * path than the route's; so would `x/../..` (holdsDotSegment) through a proxy
 * that decodes `%2F`. Then the route's own check.
 */
export function pathParamProblem(route: RouteSpec, name: string, value: string): string | undefined {
  if (holdsDotSegment(value)) return `invalid ${name} ${JSON.stringify(value)}: a path parameter cannot be or hold a dot segment ("." or ".." between slashes)`;
  return route.validatePathParam?.(name, value);
}
