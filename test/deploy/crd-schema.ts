import { parse } from 'yaml';

type Schema = Record<string, unknown>;

/**
 * A CustomResourceDefinition's openAPIV3Schema as a strict JSON schema for
 * kubeconform, as kubeconform's openapi2jsonschema does with
 * DENY_ROOT_ADDITIONAL_PROPERTIES / strict: every object that lists its
 * properties (and does not preserve unknown fields) gets
 * additionalProperties: false. Returns one schema per served version,
 * keyed by kubeconform's file name "<kind>-<group prefix>-<version>.json".
 */
export function crdToJsonSchemas(crdYaml: string): Map<string, Schema> {
  const crd = parse(crdYaml) as {
    kind: string;
    spec: { group: string; names: { kind: string }; versions: { name: string; served: boolean; schema?: { openAPIV3Schema: Schema } }[] };
  };
  if (crd.kind !== 'CustomResourceDefinition') throw new Error(`not a CRD: ${crd.kind}`);
  const out = new Map<string, Schema>();
  const groupPrefix = crd.spec.group.split('.')[0]!.toLowerCase();
  for (const v of crd.spec.versions) {
    if (!v.served || v.schema === undefined) continue;
    const schema = strict(structuredClone(v.schema.openAPIV3Schema));
    const props = (schema['properties'] ?? {}) as Record<string, Schema>;
    props['apiVersion'] = { type: 'string', enum: [`${crd.spec.group}/${v.name}`] };
    props['kind'] = { type: 'string', enum: [crd.spec.names.kind] };
    schema['properties'] = props;
    out.set(`${crd.spec.names.kind.toLowerCase()}-${groupPrefix}-${v.name}.json`, schema);
  }
  return out;
}

function strict(s: Schema): Schema {
  const props = s['properties'] as Record<string, Schema> | undefined;
  if (props !== undefined) {
    for (const p of Object.values(props)) strict(p);
    if (s['additionalProperties'] === undefined && s['x-kubernetes-preserve-unknown-fields'] !== true) s['additionalProperties'] = false;
  }
  const items = s['items'];
  if (items !== null && typeof items === 'object' && !Array.isArray(items)) strict(items as Schema);
  const additional = s['additionalProperties'];
  if (additional !== null && typeof additional === 'object') strict(additional as Schema);
  for (const k of ['anyOf', 'allOf', 'oneOf'] as const) {
    const list = s[k];
    if (Array.isArray(list)) for (const x of list) if (x !== null && typeof x === 'object') strict(x as Schema);
  }
  return s;
}
