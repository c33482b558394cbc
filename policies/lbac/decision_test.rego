# Tests for the default policy (policies/lbac/decision.rego).
#
# Data is supplied per key (`with data.lbac.teams as ...`), not as
# `with data.lbac as ...`: data.lbac is also the policy's own package, and
# replacing it whole would replace the rules under test as well.
package lbac_test

import data.lbac

# --- fixtures -------------------------------------------------------------------------

cfg := {
	"admins": {"groups": ["admins"], "users": ["root"], "headers": {"X-Scope-OrgID": "tenant-a|tenant-b"}},
	"teams": {
		"team-a": {
			"groups": ["team-a"],
			"users": ["alice"],
			"upstreams": ["*"],
			"selectors": [[{"name": "namespace", "op": "=~", "value": "team-a-.*"}]],
			"headers": {"X-Scope-OrgID": "tenant-a"},
		},
		"team-b": {
			"groups": ["team-b"],
			"users": ["u-bob"],
			"upstreams": ["metrics", "traces"],
			"selectors": [
				[{"name": "namespace", "op": "=", "value": "team-b"}],
				[{"name": "namespace", "op": "=", "value": "shared"}, {"name": "env", "op": "!=", "value": "prod"}],
			],
			"headers": {"X-Scope-OrgID": "tenant-b"},
		},
	},
	"attributes": {"tempo": {"namespace": "resource.k8s.namespace.name"}},
}

metrics := {"upstream": "metrics", "kind": "prometheus", "endpoint": "query_range", "method": "POST", "path": "/api/v1/query_range"}

logs := {"upstream": "logs", "kind": "loki", "endpoint": "query_range", "method": "GET", "path": "/loki/api/v1/query_range"}

traces := {"upstream": "traces", "kind": "tempo", "endpoint": "search", "method": "GET", "path": "/api/search"}

subject(overrides) := object.union(
	{"sub": "u-0", "username": "nobody", "groups": [], "roles": [], "auth": "jwt", "claims": {}},
	overrides,
)

# decide evaluates the policy for one subject and request against config c.
decide(c, subj, req) := d if {
	d := lbac.decision with input as {"subject": subj, "request": req}
		with data.lbac.admins as object.get(c, "admins", null)
		with data.lbac.teams as object.get(c, "teams", null)
		with data.lbac.attributes as object.get(c, "attributes", null)
}

deny(upstream) := {
	"allow": false,
	"reason": concat("", ["no team grants access to upstream ", upstream]),
	"unrestricted": false,
	"selectors": [],
	"headers": {},
}

# --- allow / deny ---------------------------------------------------------------------

test_team_member_allowed if {
	decide(cfg, subject({"groups": ["team-a"]}), metrics) == {
		"allow": true,
		"reason": "teams: team-a",
		"unrestricted": false,
		"selectors": [[{"name": "namespace", "op": "=~", "value": "team-a-.*"}]],
		"headers": {"X-Scope-OrgID": "tenant-a"},
	}
}

test_group_not_in_any_team_denied if {
	decide(cfg, subject({"groups": ["team-c", "viewers"]}), metrics) == deny("metrics")
}

test_unknown_user_denied if {
	decide(cfg, subject({"sub": "u-999", "username": "mallory", "groups": []}), logs) == deny("logs")
}

test_subject_without_groups_denied if {
	subj := object.remove(subject({}), ["groups"])
	decide(cfg, subj, metrics) == deny("metrics")
}

test_subject_without_groups_still_matches_by_username if {
	subj := object.remove(subject({"username": "alice", "usernameTrusted": true}), ["groups"])
	decide(cfg, subj, metrics).reason == "teams: team-a"
}

# A role is not a group: only groups and users grant team membership.
test_roles_do_not_grant if {
	decide(cfg, subject({"roles": ["team-a", "admins"]}), metrics) == deny("metrics")
}

# --- users ----------------------------------------------------------------------------

test_user_matched_by_trusted_username if {
	d := decide(cfg, subject({"username": "alice", "usernameTrusted": true}), metrics)
	d.allow
	d.reason == "teams: team-a"
}

# A username the source does not vouch for (an IdP's preferred_username, a
# Grafana login) matches no `users` entry, for teams and admins alike.
test_untrusted_username_matches_no_user_entry if {
	every trusted in [false, "true", 1, null] {
		decide(cfg, subject({"username": "alice", "usernameTrusted": trusted}), metrics) == deny("metrics")
		decide(cfg, subject({"username": "root", "usernameTrusted": trusted}), traces) == deny("traces")
	}
	decide(cfg, subject({"username": "alice"}), metrics) == deny("metrics")
	decide(cfg, subject({"username": "root"}), traces) == deny("traces")
}

test_user_matched_by_sub if {
	d := decide(cfg, subject({"sub": "u-bob", "username": "robert"}), metrics)
	d.allow
	d.reason == "teams: team-b"
}

test_empty_username_matches_no_empty_user_entry if {
	c := json.patch(cfg, [{"op": "add", "path": "/teams/team-a/users/-", "value": ""}])
	decide(c, subject({"username": "", "sub": "", "usernameTrusted": true}), metrics) == deny("metrics")
}

test_admin_by_sub if {
	d := decide(cfg, subject({"sub": "root", "username": "someone"}), traces)
	d.allow
	d.unrestricted
}

# --- several teams --------------------------------------------------------------------

# Two teams on different tenants with different selectors: one request cannot keep each team's
# selectors in its own tenant (X-Scope-OrgID a|b reads both with the same selectors), so it is denied.
test_teams_with_different_tenants_and_selectors_denied if {
	d := decide(cfg, subject({"groups": ["team-b", "team-a", "other"]}), metrics)
	not d.allow
	d.selectors == []
	d.headers == {}
	startswith(d.reason, "teams team-a,team-b set different headers")
}

# --- the team a request names (X-Lbac-Team → input.request.team) ------------------------

with_team(req, team) := object.union(req, {"team": team})

# A member of teams on different tenants picks one per request: that team's selectors and tenant only.
test_requested_team_alone_grants if {
	both := subject({"groups": ["team-b", "team-a"]})
	decide(cfg, both, with_team(metrics, "team-b")) == {
		"allow": true,
		"reason": "teams: team-b",
		"unrestricted": false,
		"selectors": [
			[{"name": "env", "op": "!=", "value": "prod"}, {"name": "namespace", "op": "=", "value": "shared"}],
			[{"name": "namespace", "op": "=", "value": "team-b"}],
		],
		"headers": {"X-Scope-OrgID": "tenant-b"},
	}
	a := decide(cfg, both, with_team(metrics, "team-a"))
	a.selectors == [[{"name": "namespace", "op": "=~", "value": "team-a-.*"}]]
	a.headers == {"X-Scope-OrgID": "tenant-a"}
}

# Naming a team never widens: not a member, an unknown team, a team not covering the upstream,
# or a team that is not a string is a deny that names the team.
test_requested_team_must_grant if {
	d := decide(cfg, subject({"groups": ["team-a"]}), with_team(metrics, "team-b"))
	not d.allow
	d.reason == "team team-b does not grant this subject access to upstream metrics"
	d.selectors == []
	d.headers == {}
	not decide(cfg, subject({"groups": ["team-a"]}), with_team(metrics, "team-c")).allow
	not decide(cfg, subject({"groups": ["team-b"]}), with_team(logs, "team-b")).allow
	n := decide(cfg, subject({"groups": ["team-a"]}), with_team(metrics, ["team-a"]))
	not n.allow
	n.reason == "team (not a string) does not grant this subject access to upstream metrics"
	not decide(cfg, subject({"groups": ["team-a"]}), with_team(metrics, null)).allow
}

# A member of one team naming it gets what the team grants anyway; admins stay unrestricted.
test_requested_team_same_as_without if {
	alice := subject({"groups": ["team-a"]})
	decide(cfg, alice, with_team(metrics, "team-a")) == decide(cfg, alice, metrics)
	decide(cfg, subject({"groups": ["admins"]}), with_team(metrics, "team-a")).unrestricted
}

# A headerless team and a team with a tenant: the headerless team's selectors would read that tenant.
test_headerless_team_and_tenant_team_denied if {
	c := json.patch(cfg, [{"op": "remove", "path": "/teams/team-a/headers"}])
	not decide(c, subject({"groups": ["team-a", "team-b"]}), metrics).allow
}

# Same tenant, different selectors: the union of the selectors.
test_same_tenant_teams_union_selectors if {
	c := json.patch(cfg, [{"op": "replace", "path": "/teams/team-b/headers", "value": {"x-scope-orgid": "tenant-a"}}])
	decide(c, subject({"groups": ["team-b", "team-a", "other"]}), metrics) == {
		"allow": true,
		"reason": "teams: team-a,team-b",
		"unrestricted": false,
		"selectors": [
			[{"name": "env", "op": "!=", "value": "prod"}, {"name": "namespace", "op": "=", "value": "shared"}],
			[{"name": "namespace", "op": "=", "value": "team-b"}],
			[{"name": "namespace", "op": "=~", "value": "team-a-.*"}],
		],
		"headers": {"X-Scope-OrgID": "tenant-a"},
	}
}

test_team_by_group_and_other_team_by_user if {
	c := json.patch(cfg, [{"op": "replace", "path": "/teams/team-b/headers", "value": {"X-Scope-OrgID": "tenant-a"}}])
	d := decide(c, subject({"groups": ["team-a"], "sub": "u-bob"}), metrics)
	d.reason == "teams: team-a,team-b"
	count(d.selectors) == 3
}

# Same selectors, different tenants: the union of the tenants (the form Loki, Tempo and Mimir read).
test_header_values_split_sorted_deduplicated if {
	sel := [[{"name": "a", "op": "=", "value": "1"}]]
	c := {"teams": {
		"x": {"groups": ["x"], "selectors": sel, "headers": {"X-Scope-OrgID": "t3|t1", "X-Other": "o"}},
		"y": {"groups": ["y"], "selectors": sel, "headers": {"X-Scope-OrgID": "t1||t2"}},
		"z": {"groups": ["z"], "selectors": sel, "headers": {"X-Scope-OrgID": 42, "X-Empty": "|"}},
	}}
	d := decide(c, subject({"groups": ["x", "y", "z"]}), metrics)
	d.headers == {"X-Scope-OrgID": "t1|t2|t3", "X-Other": "o"}
	d.selectors == sel
}

test_header_names_merged_case_insensitively if {
	sel := [[{"name": "a", "op": "=", "value": "1"}]]
	c := {"teams": {
		"x": {"groups": ["x"], "selectors": sel, "headers": {"x-scope-orgid": "t2"}},
		"y": {"groups": ["y"], "selectors": sel, "headers": {"X-Scope-OrgID": "t1"}},
	}}
	decide(c, subject({"groups": ["x", "y"]}), metrics).headers == {"X-Scope-OrgID": "t1|t2"}
}

test_identical_alternatives_appear_once if {
	sel := [[{"name": "namespace", "op": "=", "value": "shared"}]]
	c := {"teams": {
		"x": {"groups": ["x"], "selectors": sel},
		"y": {"groups": ["y"], "selectors": array.concat(sel, sel)},
	}}
	decide(c, subject({"groups": ["x", "y"]}), metrics).selectors == sel
}

# Within an AND-group, matchers are de-duplicated and sorted; extra keys are dropped.
test_group_normalised if {
	c := {"teams": {"x": {"groups": ["x"], "selectors": [[
		{"name": "b", "op": "=", "value": "2", "comment": "ignored"},
		{"name": "a", "op": "=", "value": "1"},
		{"name": "b", "op": "=", "value": "2"},
	]]}}}
	decide(c, subject({"groups": ["x"]}), metrics).selectors == [[
		{"name": "a", "op": "=", "value": "1"},
		{"name": "b", "op": "=", "value": "2"},
	]]
}

# --- values ---------------------------------------------------------------------------

test_regex_values_pass_through_unchanged if {
	value := `team-a-.*|ops-(dev|stg)\.x|"q"`
	c := {"teams": {"x": {"groups": ["x"], "selectors": [[{"name": "namespace", "op": "!~", "value": value}]]}}}
	decide(c, subject({"groups": ["x"]}), logs).selectors == [[{"name": "namespace", "op": "!~", "value": value}]]
}

# --- admins ---------------------------------------------------------------------------

test_admin_by_group_unrestricted_with_headers if {
	decide(cfg, subject({"groups": ["team-a", "admins"]}), metrics) == {
		"allow": true,
		"reason": "admin",
		"unrestricted": true,
		"selectors": [],
		"headers": {"X-Scope-OrgID": "tenant-a|tenant-b"},
	}
}

test_admin_by_user if {
	d := decide(cfg, subject({"username": "root", "usernameTrusted": true}), traces)
	d.allow
	d.unrestricted
}

test_admin_without_headers if {
	c := json.patch(cfg, [{"op": "remove", "path": "/admins/headers"}])
	d := decide(c, subject({"groups": ["admins"]}), logs)
	d.unrestricted
	d.headers == {}
}

test_admin_non_string_header_values_dropped if {
	c := json.patch(cfg, [{"op": "replace", "path": "/admins/headers", "value": {"X-A": "a", "X-B": ["b"]}}])
	decide(c, subject({"groups": ["admins"]}), logs).headers == {"X-A": "a"}
}

# --- upstream scoping -----------------------------------------------------------------

test_upstream_in_list_allowed if {
	decide(cfg, subject({"groups": ["team-b"]}), metrics).allow
}

test_upstream_not_in_list_denied if {
	decide(cfg, subject({"groups": ["team-b"]}), logs) == deny("logs")
}

test_upstream_scoping_per_team if {
	d := decide(cfg, subject({"groups": ["team-a", "team-b"]}), logs)
	d.reason == "teams: team-a"
	d.headers == {"X-Scope-OrgID": "tenant-a"}
}

test_missing_upstreams_means_all if {
	c := json.patch(cfg, [{"op": "remove", "path": "/teams/team-b/upstreams"}])
	decide(c, subject({"groups": ["team-b"]}), logs).allow
}

test_malformed_upstreams_cover_nothing if {
	every bad in [null, "logs", {"logs": true}, []] {
		c := json.patch(cfg, [{"op": "replace", "path": "/teams/team-b/upstreams", "value": bad}])
		decide(c, subject({"groups": ["team-b"]}), logs) == deny("logs")
	}
}

test_request_without_upstream_denied if {
	c := json.patch(cfg, [{"op": "remove", "path": "/teams/team-a/upstreams"}])
	d := decide(c, subject({"groups": ["team-b"]}), object.remove(metrics, ["upstream"]))
	d == deny("(none)")
}

# --- tempo attribute mapping ----------------------------------------------------------

test_tempo_names_mapped if {
	d := decide(cfg, subject({"groups": ["team-b"]}), traces)
	d.selectors == [
		[{"name": "env", "op": "!=", "value": "prod"}, {"name": "resource.k8s.namespace.name", "op": "=", "value": "shared"}],
		[{"name": "resource.k8s.namespace.name", "op": "=", "value": "team-b"}],
	]
}

test_prometheus_names_not_mapped if {
	d := decide(cfg, subject({"groups": ["team-a"]}), metrics)
	d.selectors == [[{"name": "namespace", "op": "=~", "value": "team-a-.*"}]]
}

test_bad_attribute_mapping_keeps_name if {
	c := object.union(cfg, {"attributes": {"tempo": {"namespace": ""}}})
	decide(c, subject({"groups": ["team-a"]}), traces).selectors == [[{"name": "namespace", "op": "=~", "value": "team-a-.*"}]]
}

# --- fail closed ----------------------------------------------------------------------

test_team_with_empty_selectors_grants_nothing if {
	c := {"teams": {"open": {"groups": ["x"], "selectors": [], "headers": {"X-Scope-OrgID": "all"}}}}
	decide(c, subject({"groups": ["x"]}), metrics) == deny("metrics")
}

test_team_with_missing_selectors_grants_nothing if {
	c := {"teams": {"open": {"groups": ["x"]}}}
	decide(c, subject({"groups": ["x"]}), metrics) == deny("metrics")
}

test_empty_selectors_team_skipped_next_to_real_team if {
	c := json.patch(cfg, [{"op": "add", "path": "/teams/open", "value": {"groups": ["team-a"], "selectors": [[]], "headers": {"X-Scope-OrgID": "all"}}}])
	decide(c, subject({"groups": ["team-a"]}), metrics) == decide(cfg, subject({"groups": ["team-a"]}), metrics)
}

test_malformed_group_dropped_whole if {
	c := {"teams": {"x": {"groups": ["x"], "selectors": [
		[{"name": "namespace", "op": "=", "value": "a"}, {"name": "env", "op": "==", "value": "prod"}],
		[{"name": "namespace", "op": "=", "value": "b"}, {"name": "", "op": "=", "value": "v"}],
		[{"name": "namespace", "op": "=", "value": "c"}, {"name": "env", "op": "=", "value": 1}],
		[{"name": "namespace", "op": "=", "value": "d"}, "env=prod"],
		{"name": "namespace", "op": "=", "value": "e"},
		[{"name": "namespace", "op": "=", "value": "ok"}],
	]}}}
	decide(c, subject({"groups": ["x"]}), metrics).selectors == [[{"name": "namespace", "op": "=", "value": "ok"}]]
}

test_no_data_at_all_denied if {
	d := lbac.decision with input as {"subject": subject({"groups": ["admins", "team-a"], "username": "root"}), "request": metrics}
	d == deny("metrics")
}

test_no_input_at_all_denied if {
	lbac.decision == deny("(none)")
}

test_odd_data_never_allows if {
	every c in [
		{"teams": [{"groups": ["team-a"], "selectors": [[{"name": "a", "op": "=", "value": "1"}]]}]},
		{"teams": {"t": {"groups": "team-a", "selectors": [[{"name": "a", "op": "=", "value": "1"}]]}}},
		{"teams": {"t": {"groups": {"team-a": true}, "selectors": [[{"name": "a", "op": "=", "value": "1"}]]}}},
		{"teams": {"t": "team-a"}},
		{"teams": "team-a"},
		{"admins": {"groups": "admins"}},
		{"admins": ["admins"]},
		{"admins": {"groups": {"admins": "admins"}}},
	] {
		decide(c, subject({"groups": ["team-a", "admins"]}), metrics) == deny("metrics")
	}
}

test_odd_subject_never_allows if {
	every subj in [
		subject({"groups": "team-a"}),
		subject({"groups": {"team-a": "team-a"}}),
		subject({"groups": [["team-a"]]}),
		subject({"groups": null, "username": ["alice"], "usernameTrusted": true, "sub": null}),
		"alice",
		null,
	] {
		decide(cfg, subj, metrics) == deny("metrics")
	}
}
