# Tests for the claims-driven mode (policies/lbac/claims.rego).
package lbac_claims_test

import data.lbac

mode := {"enabled": true, "namespacesClaim": "namespaces", "labelsClaim": "labels", "namespaceLabel": "namespace"}

teams := {"team-a": {
	"groups": ["team-a"],
	"selectors": [[{"name": "namespace", "op": "=~", "value": "team-a-.*"}]],
	"headers": {"X-Scope-OrgID": "tenant-a"},
}}

admins := {"groups": ["admins"], "headers": {"X-Scope-OrgID": "all"}}

metrics := {"upstream": "metrics", "kind": "prometheus", "endpoint": "query", "method": "GET", "path": "/api/v1/query"}

traces := {"upstream": "traces", "kind": "tempo", "endpoint": "search", "method": "GET", "path": "/api/search"}

subj(groups, claims) := {"sub": "u-1", "username": "u", "groups": groups, "roles": [], "auth": "jwt", "claims": claims}

decide_with(m, groups, claims, req) := d if {
	d := lbac.decision with input as {"subject": subj(groups, claims), "request": req}
		with data.lbac.admins as admins
		with data.lbac.teams as teams
		with data.lbac.attributes as {"tempo": {"namespace": "resource.k8s.namespace.name"}}
		with data.lbac.claimsMode as m
}

decide(claims) := decide_with(mode, [], claims, metrics)

allowed(reason, group) := {"allow": true, "reason": reason, "unrestricted": false, "selectors": [group], "headers": {}}

denied(reason) := {"allow": false, "reason": reason, "unrestricted": false, "selectors": [], "headers": {}}

neither := "claims mode: the token carries neither a namespaces nor a labels claim"

# --- allow ------------------------------------------------------------------------------

test_namespaces_claim_becomes_alternation if {
	decide({"namespaces": ["b", "a"]}) == allowed("claims: namespaces", [{"name": "namespace", "op": "=~", "value": "a|b"}])
}

test_single_namespace_is_equality if {
	decide({"namespaces": ["a"]}) == allowed("claims: namespaces", [{"name": "namespace", "op": "=", "value": "a"}])
}

test_namespace_string_claim if {
	decide({"namespaces": "a.b"}) == allowed("claims: namespaces", [{"name": "namespace", "op": "=", "value": "a.b"}])
}

test_duplicate_namespaces_collapse if {
	decide({"namespaces": ["a", "a"]}) == allowed("claims: namespaces", [{"name": "namespace", "op": "=", "value": "a"}])
}

test_label_names if {
	decide({"labels": {"a": "x", "_b9": "y", "__name__": "up", "Z": "z"}}).selectors == [[
		{"name": "Z", "op": "=", "value": "z"},
		{"name": "__name__", "op": "=", "value": "up"},
		{"name": "_b9", "op": "=", "value": "y"},
		{"name": "a", "op": "=", "value": "x"},
	]]
	every bad in ["9a", "a-b", "a.b", "ñ", "a b", "a:b"] {
		decide({"labels": {bad: "x"}}).allow == false
	}
}

test_labels_claim_becomes_and_group if {
	decide({"labels": {"app": "x", "team": ["z", "y"]}}) == allowed("claims: labels", [
		{"name": "app", "op": "=", "value": "x"},
		{"name": "team", "op": "=~", "value": "y|z"},
	])
}

test_both_claims_anded if {
	decide({"namespaces": ["a", "b"], "labels": {"app": "x"}}) == allowed("claims: labels,namespaces", [
		{"name": "app", "op": "=", "value": "x"},
		{"name": "namespace", "op": "=~", "value": "a|b"},
	])
}

test_namespace_also_in_labels_both_kept if {
	decide({"namespaces": ["a"], "labels": {"namespace": "b"}}).selectors == [[
		{"name": "namespace", "op": "=", "value": "a"},
		{"name": "namespace", "op": "=", "value": "b"},
	]]
}

test_configured_claim_paths_and_label if {
	m := {"enabled": true, "namespacesClaim": "ext.tenancy.ns", "labelsClaim": "https://example.com/labels", "namespaceLabel": "kubernetes_namespace"}
	d := decide_with(m, [], {"ext": {"tenancy": {"ns": ["a"]}}, "https://example.com/labels": {"env": "dev"}}, metrics)
	d == allowed("claims: ext.tenancy.ns,https://example.com/labels", [
		{"name": "env", "op": "=", "value": "dev"},
		{"name": "kubernetes_namespace", "op": "=", "value": "a"},
	])
}

test_literal_dotted_key_wins if {
	m := object.union(mode, {"namespacesClaim": "a.b"})
	decide_with(m, [], {"a.b": ["lit"], "a": {"b": ["nested"]}}, metrics).selectors == [[{"name": "namespace", "op": "=", "value": "lit"}]]
}

test_defaults_when_settings_missing if {
	decide_with({"enabled": true}, [], {"namespaces": ["a"]}, metrics) == allowed("claims: namespaces", [{"name": "namespace", "op": "=", "value": "a"}])
}

test_tempo_names_mapped if {
	decide_with(mode, [], {"namespaces": ["a"]}, traces).selectors == [[{"name": "resource.k8s.namespace.name", "op": "=", "value": "a"}]]
}

test_claims_win_over_team_membership if {
	decide_with(mode, ["team-a"], {"namespaces": ["a"]}, metrics) == allowed("claims: namespaces", [{"name": "namespace", "op": "=", "value": "a"}])
}

test_admin_still_unrestricted if {
	d := decide_with(mode, ["admins"], {}, metrics)
	d.unrestricted == true
	d.headers == {"X-Scope-OrgID": "all"}
}

# --- RE2 quoting ------------------------------------------------------------------------

test_metacharacters_quoted if {
	d := decide({"namespaces": ["a.b", "c|d", "e(f)*", "g[h]{2}", "i+j?", "^k$", "l\\m", "ñ.ü"]})
	d.selectors == [[{
		"name": "namespace", "op": "=~",
		"value": `\^k\$|a\.b|c\|d|e\(f\)\*|g\[h\]\{2\}|i\+j\?|l\\m|ñ\.ü`,
	}]]
}

test_quoted_values_match_themselves_only if {
	values := ["a.b", "c|d", "e(f)*", "g[h]{2}", "i+j?", "^k$", "l\\m", "ñ.ü", "-#/ x"]
	every v in values {
		q := lbac.re2_quote(v)
		regex.match(concat("", ["^(?:", q, ")$"]), v)
	}
	not regex.match(concat("", ["^(?:", lbac.re2_quote("a.b"), ")$"]), "aXb")
	not regex.match(concat("", ["^(?:", lbac.re2_quote("c|d"), ")$"]), "c")
	not regex.match(concat("", ["^(?:", lbac.re2_quote("e(f)*"), ")$"]), "e")
	d := decide({"namespaces": values})
	re := concat("", ["^(?:", d.selectors[0][0].value, ")$"])
	every v in values {
		regex.match(re, v)
	}
	not regex.match(re, "aXb")
	not regex.match(re, "c")
	not regex.match(re, "k")
}

test_quote_empty_string if {
	lbac.re2_quote("") == ""
}

# --- deny -------------------------------------------------------------------------------

test_neither_claim_denied if {
	decide({"sub": "u-1"}) == denied(neither)
}

test_null_claims_count_as_absent if {
	decide({"namespaces": null, "labels": null}) == denied(neither)
}

test_team_member_without_claims_denied_without_fallback if {
	decide_with(mode, ["team-a"], {}, metrics) == denied(neither)
}

test_fallback_to_teams_when_configured if {
	m := object.union(mode, {"teamsFallback": true})
	d := decide_with(m, ["team-a"], {}, metrics)
	d.reason == "teams: team-a"
	d.selectors == [[{"name": "namespace", "op": "=~", "value": "team-a-.*"}]]
}

test_fallback_not_used_when_claims_present if {
	m := object.union(mode, {"teamsFallback": true})
	decide_with(m, ["team-a"], {"namespaces": ["x"]}, metrics).selectors == [[{"name": "namespace", "op": "=", "value": "x"}]]
}

test_fallback_non_member_denied if {
	m := object.union(mode, {"teamsFallback": true})
	decide_with(m, [], {}, metrics).allow == false
}

test_malformed_namespaces_denied if {
	every bad in [[], [""], "", 3, ["a", 1], {"a": "b"}, true] {
		decide({"namespaces": bad}) == denied("claims mode: malformed claim(s) namespaces")
	}
}

test_malformed_namespaces_deny_even_with_good_labels if {
	decide({"namespaces": [], "labels": {"app": "x"}}) == denied("claims mode: malformed claim(s) namespaces")
}

test_malformed_labels_denied if {
	every bad in [{}, [], "app=x", {"app": ""}, {"app": []}, {"app": [""]}, {"app": 1}, {"bad-name": "x"}, {"app": "x", "team": null}] {
		decide({"labels": bad}) == denied("claims mode: malformed claim(s) labels")
	}
}

test_malformed_labels_deny_even_with_good_namespaces if {
	decide({"namespaces": ["a"], "labels": {"app": ""}}) == denied("claims mode: malformed claim(s) labels")
}

test_both_malformed if {
	decide({"namespaces": 1, "labels": 2}) == denied("claims mode: malformed claim(s) labels,namespaces")
}

test_claims_not_an_object if {
	decide_with(mode, [], "namespaces", metrics) == denied(neither)
}

# --- mode off ---------------------------------------------------------------------------

test_disabled_mode_ignores_claims if {
	d := decide_with({"enabled": false}, [], {"namespaces": ["a"]}, metrics)
	d.allow == false
	startswith(d.reason, "no team grants access")
}

test_non_boolean_enabled_is_off if {
	decide_with({"enabled": "true"}, ["team-a"], {"namespaces": ["a"]}, metrics).reason == "teams: team-a"
}

test_absent_mode_is_off if {
	d := lbac.decision with input as {"subject": subj(["team-a"], {"namespaces": ["a"]}), "request": metrics}
		with data.lbac.teams as teams
	d.reason == "teams: team-a"
}

# --- issuers: whose claims count --------------------------------------------------------

corp := "https://corp.example.com"

listed := object.union(mode, {"issuers": [corp, "https://other.example.com/"]})

listed_fallback := object.union(listed, {"teamsFallback": true})

from(auth, issuer, groups, claims) := object.union(subj(groups, claims), {"auth": auth, "issuer": issuer})

decide_subject(m, s) := d if {
	d := lbac.decision with input as {"subject": s, "request": metrics}
		with data.lbac.admins as admins
		with data.lbac.teams as teams
		with data.lbac.attributes as {"tempo": {"namespace": "resource.k8s.namespace.name"}}
		with data.lbac.claimsMode as m
}

untrusted := "claims mode: the subject is not a token of an issuer in claimsMode.issuers"

test_listed_issuer_claims_decide if {
	every auth in ["jwt", "oidc", "introspection", "grafana"] {
		decide_subject(listed, from(auth, corp, [], {"namespaces": ["a"]})) == allowed("claims: namespaces", [{"name": "namespace", "op": "=", "value": "a"}])
	}
}

test_listed_issuer_trailing_slash_ignored if {
	# Grafana accepts its root URL with or without "/" as iss; a listed entry may carry one too.
	decide_subject(listed, from("grafana", "https://corp.example.com/", [], {"namespaces": ["a"]})).allow == true
	decide_subject(listed, from("jwt", "https://other.example.com", [], {"namespaces": ["a"]})).allow == true
	decide_subject(listed, from("jwt", "https://other.example.com//", [], {"namespaces": ["a"]})).allow == true
}

test_unlisted_issuer_with_claims_denied if {
	decide_subject(listed, from("jwt", "https://partner.example.com", [], {"namespaces": ["payments"]})) == denied(untrusted)

	# A look-alike is another issuer.
	decide_subject(listed, from("jwt", "https://corp.example.com.evil", [], {"namespaces": ["a"]})) == denied(untrusted)
	decide_subject(listed, from("jwt", "https://corp.example.com/x", [], {"namespaces": ["a"]})) == denied(untrusted)
	decide_subject(listed, from("jwt", "HTTPS://CORP.EXAMPLE.COM", [], {"namespaces": ["a"]})) == denied(untrusted)
}

test_unlisted_issuer_claims_not_read_even_malformed if {
	# Denied for its issuer, not for its claims: they are not read at all.
	decide_subject(listed, from("jwt", "https://partner.example.com", [], {"namespaces": [], "labels": {"bad-name": 1}})) == denied(untrusted)
}

test_unlisted_issuer_team_member_denied_without_fallback if {
	decide_subject(listed, from("jwt", "https://partner.example.com", ["team-a"], {"namespaces": ["payments"]})) == denied(untrusted)
}

test_unlisted_issuer_with_fallback_teams_decide_claims_ignored if {
	d := decide_subject(listed_fallback, from("jwt", "https://partner.example.com", ["team-a"], {"namespaces": ["payments"], "labels": {"app": "x"}}))
	d.reason == "teams: team-a"
	d.selectors == [[{"name": "namespace", "op": "=~", "value": "team-a-.*"}]]
	d.headers == {"X-Scope-OrgID": "tenant-a"}
}

test_unlisted_issuer_with_fallback_non_member_denied if {
	d := decide_subject(listed_fallback, from("jwt", "https://partner.example.com", [], {"namespaces": ["payments"]}))
	d == denied("no team grants access to upstream metrics")
}

test_listed_issuer_with_fallback_claims_still_decide if {
	decide_subject(listed_fallback, from("jwt", corp, ["team-a"], {"namespaces": ["x"]})).selectors == [[{"name": "namespace", "op": "=", "value": "x"}]]
	decide_subject(listed_fallback, from("jwt", corp, ["team-a"], {})).reason == "teams: team-a"
}

test_no_issuer_denied_or_teams if {
	# subj has auth jwt and no issuer field.
	decide_subject(listed, subj(["team-a"], {"namespaces": ["a"]})) == denied(untrusted)
	decide_subject(listed_fallback, subj(["team-a"], {"namespaces": ["a"]})).reason == "teams: team-a"
	decide_subject(listed_fallback, subj([], {"namespaces": ["a"]})).allow == false
}

test_non_string_issuer_denied if {
	every issuer in [null, 1, [corp], {"iss": corp}, "", "/"] {
		decide_subject(listed, from("jwt", issuer, [], {"namespaces": ["a"]})) == denied(untrusted)
	}
}

test_static_and_certificate_subjects_never_read if {
	# apikey and basic subjects have no issuer; an mtls subject's is its CA's CN, never compared.
	every auth in ["apikey", "basic", "mtls", "fake", ""] {
		decide_subject(listed, from(auth, corp, [], {"namespaces": ["a"]})) == denied(untrusted)
		decide_subject(listed_fallback, from(auth, corp, ["team-a"], {"namespaces": ["a"]})).reason == "teams: team-a"
	}
	decide_subject(listed, object.union(subj([], {"namespaces": ["a"]}), {"auth": "apikey"})) == denied(untrusted)
}

test_admin_of_unlisted_issuer_still_unrestricted if {
	d := decide_subject(listed, from("jwt", "https://partner.example.com", ["admins"], {"namespaces": ["a"]}))
	d.unrestricted == true
	d.reason == "admin"
}

test_malformed_issuers_trust_no_one if {
	every bad in [corp, null, [], [1], {"a": corp}, true] {
		m := object.union(mode, {"issuers": bad})
		decide_subject(m, from("jwt", corp, [], {"namespaces": ["a"]})) == denied(untrusted)
	}

	# A list with a non-string entry still trusts its string entries.
	decide_subject(object.union(mode, {"issuers": [1, corp]}), from("jwt", corp, [], {"namespaces": ["a"]})).allow == true
}

test_issuers_unset_every_issuer_as_before if {
	every s in [
		from("jwt", "https://partner.example.com", [], {"namespaces": ["a"]}),
		from("introspection", corp, [], {"namespaces": ["a"]}),
		subj([], {"namespaces": ["a"]}),
		object.union(subj([], {"namespaces": ["a"]}), {"auth": "apikey"}),
	] {
		decide_subject(mode, s) == allowed("claims: namespaces", [{"name": "namespace", "op": "=", "value": "a"}])
	}
	decide_subject(mode, from("jwt", "https://partner.example.com", [], {})) == denied(neither)
}
