# Claims-driven mode of the default policy (as prometheus-multi-tenant-proxy
# offers): the verified token's own claims are the allowed selectors.
#
#   data.lbac.claimsMode {
#     enabled:         true,
#     namespacesClaim: "namespaces",  # claim path (dotted); ["a", "b"] or "a"
#     labelsClaim:     "labels",      # claim path (dotted); {app: "x", team: ["y", "z"]}
#     namespaceLabel:  "namespace",   # the label the namespaces claim restricts
#     teamsFallback:   false,         # tokens carrying neither claim: teams decide (true) or deny
#     issuers:         ["https://idp.example.com"],  # optional: whose claims count
#   }
#
# A token with `namespaces: ["a", "b"]` and `labels: {app: "x"}` may see one
# AND-group: namespace=~"a|b", app="x". Values are literals: several values
# become one `=~` alternation of RE2-quoted values, a single value an `=`.
# Names go through the same per-kind attribute mapping as team selectors.
#
# Fail closed: a claim that is present but empty or malformed (a number, an
# empty list, an empty string value, a non-string element, a bad label name)
# denies the request, even when the other claim is fine (dropping it would
# widen access). A token carrying neither claim is denied unless
# `teamsFallback` is true, in which case the team rules decide. Admins are
# decided before this mode and stay unrestricted.
#
# Whose claims count: without `issuers`, every subject's. With it, only those
# of a subject authenticated by a token provider (auth jwt, oidc,
# introspection or grafana) whose `input.subject.issuer` is in the list
# (trailing "/" ignored on both sides). Any other subject (another issuer, no
# issuer, apikey, basic, mtls) is read as carrying no claims at all: refused,
# or decided by the teams alone with `teamsFallback`. An `issuers` that is not
# a list trusts no one (fail closed); entries that are not strings never match.
package lbac

claims_mode_enabled if data.lbac.claimsMode.enabled == true

# The mode decides this request: enabled, and not handed to the teams because
# the token carries neither claim (as this mode reads them: none at all when
# its issuer is not trusted, mode_claims) and the fallback is on.
claims_mode_applies if {
	claims_mode_enabled
	not claims_fall_back_to_teams
}

claims_fall_back_to_teams if {
	data.lbac.claimsMode.teamsFallback == true
	not namespaces_claim_present
	not labels_claim_present
}

claims_decision := {
	"allow": true,
	"reason": concat("", ["claims: ", concat(",", sort(present_claims))]),
	"unrestricted": false,
	"selectors": [claims_group],
	"headers": {},
} if {
	count(present_claims) > 0
	claims_valid
} else := {
	"allow": false,
	"reason": claims_denial_reason,
	"unrestricted": false,
	"selectors": [],
	"headers": {},
}

claims_denial_reason := "claims mode: the subject is not a token of an issuer in claimsMode.issuers" if {
	not claims_issuer_trusted
} else := "claims mode: the token carries neither a namespaces nor a labels claim" if {
	count(present_claims) == 0
} else := concat("", ["claims mode: malformed claim(s) ", concat(",", sort(malformed_claims))])

# --- configuration ----------------------------------------------------------------------

claims_setting(key, default_value) := v if {
	v := data.lbac.claimsMode[key]
	is_string(v)
	v != ""
} else := default_value

namespaces_claim_path := claims_setting("namespacesClaim", "namespaces")

labels_claim_path := claims_setting("labelsClaim", "labels")

namespace_label := claims_setting("namespaceLabel", "namespace")

# --- whose claims count ------------------------------------------------------------------

# The `auth` of the subjects token providers yield (src/identity): their
# `issuer` is the verified token's `iss` (jwt, oidc, grafana) or the
# introspection answer's (equal to the provider's `issuer` when one is set).
# An mtls subject's issuer is its CA's CN, which never counts.
claims_token_auths := {"jwt", "oidc", "introspection", "grafana"}

claims_issuer_trusted if not has_key(data.lbac.claimsMode, "issuers")

claims_issuer_trusted if {
	input.subject.auth in claims_token_auths
	is_string(input.subject.issuer)
	issuer := trim_right(input.subject.issuer, "/")
	issuer != ""
	some listed in as_array(data.lbac.claimsMode.issuers)
	is_string(listed)
	trim_right(listed, "/") == issuer
}

# The claims this mode reads: the subject's own, or none when its issuer is
# not trusted (so nothing below can read them, not even in part).
mode_claims := as_object(input.subject.claims) if {
	claims_issuer_trusted
} else := {}

# --- reading claims ---------------------------------------------------------------------

# A literal key (which may contain dots) wins over a dotted path into nested objects.
claim_at(path) := v if {
	v := mode_claims[path]
} else := v if {
	v := object.get(mode_claims, split(path, "."), null)
}

namespaces_claim := claim_at(namespaces_claim_path)

labels_claim := claim_at(labels_claim_path)

# null counts as absent (providers emit "claim": null for unset attributes).
namespaces_claim_present if namespaces_claim != null

labels_claim_present if labels_claim != null

present_claims contains namespaces_claim_path if namespaces_claim_present

present_claims contains labels_claim_path if labels_claim_present

malformed_claims contains namespaces_claim_path if {
	namespaces_claim_present
	not namespaces_matcher
}

malformed_claims contains labels_claim_path if {
	labels_claim_present
	not labels_valid
}

claims_valid if count(malformed_claims) == 0

# --- the selector group -----------------------------------------------------------------

claims_group := sort(namespace_matchers | label_matchers)

namespace_matchers contains namespaces_matcher if namespaces_claim_present

label_matchers contains m if {
	labels_claim_present
	some name, raw in as_object(labels_claim)
	m := values_matcher(backend_name(name), claim_values(raw))
}

namespaces_matcher := values_matcher(backend_name(namespace_label), claim_values(namespaces_claim))

# Every entry of the labels object must be usable: a label name and at least one value.
labels_valid if {
	is_object(labels_claim)
	count(labels_claim) > 0
	every name, raw in labels_claim {
		label_name(name)
		claim_values(raw)
	}
}

# A Prometheus label name, [a-zA-Z_][a-zA-Z0-9_]*, checked character by
# character (regex builtins would link RE2 into the WebAssembly module).
label_start_chars := {c | some c in split("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_", "")}

label_chars := label_start_chars | {c | some c in split("0123456789", "")}

label_name(name) if {
	is_string(name)
	substring(name, 0, 1) in label_start_chars
	every c in [substring(name, i, 1) |
		some i in numbers.range(0, count(name) - 1)
		i >= 0
		i < count(name)
	] {
		c in label_chars
	}
}

# A value list: one non-empty string, or a non-empty array of them. Anything
# else is undefined (malformed). An empty value would match series *without*
# the label, so it is never accepted.
claim_values(raw) := [raw] if {
	is_string(raw)
	raw != ""
} else := raw if {
	is_array(raw)
	count(raw) > 0
	every v in raw {
		is_string(v)
		v != ""
	}
}

values_matcher(name, values) := {"name": name, "op": "=", "value": only} if {
	uniq := {v | some v in values}
	count(uniq) == 1
	some only in uniq
} else := {"name": name, "op": "=~", "value": concat("|", [re2_quote(v) | some v in sort({v | some v in values})])}

# --- RE2 quoting ------------------------------------------------------------------------

# Go's regexp.QuoteMeta: every RE2 metacharacter is backslash-escaped, so the
# value matches itself literally (and nothing else) inside an anchored =~.
# Character by character (substring counts code points), because the
# replace builtins differ between OPA's Go and WebAssembly implementations.
re2_meta := {"\\", ".", "+", "*", "?", "(", ")", "|", "[", "]", "{", "}", "^", "$"}

re2_quote(s) := concat("", [quote_char(substring(s, i, 1)) |
	some i in numbers.range(0, count(s) - 1)
	i >= 0
	i < count(s)
])

quote_char(c) := concat("", ["\\", c]) if {
	c in re2_meta
} else := c
