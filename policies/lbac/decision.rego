# The default lbac-gateway policy.
#
# Built with `opa build -t wasm -e lbac/decision` (scripts/build-policy.sh) and
# evaluated by the gateway for every request. Every rule comes from data, so
# users configure teams in YAML and never have to write Rego; the gateway's
# config layer normalises its YAML into exactly this shape:
#
#   data.lbac.admins     {groups: [..], users: [..], headers: {name: value}}
#   data.lbac.teams      {<team>: {groups, users, upstreams, selectors, headers}}
#   data.lbac.attributes {<request.kind>: {<selector name>: <backend name>}}
#   data.lbac.claimsMode {enabled, namespacesClaim, labelsClaim, namespaceLabel,
#                         teamsFallback, issuers}   (optional; see claims.rego)
#
# The output is the decision contract (ARCHITECTURE.md, "The decision contract"):
#   {allow, reason, unrestricted, selectors: [[{name, op, value}]], headers}
#
# Design rule: anything missing or of the wrong type counts as "grants
# nothing". Odd data can only ever narrow access, never widen it, and
# `decision` is always defined (a deny at worst).
#
# The config layer owns the names `admins`, `teams`, `attributes` and `claimsMode` under
# data.lbac; the rules below live in the same namespace, so they are named
# differently (data.lbac.<rule> would otherwise be ambiguous).
package lbac

# --- decision -----------------------------------------------------------------

# Admins see everything: no selectors, forwarded unrewritten, with their own
# headers (e.g. every tenant in X-Scope-OrgID).
decision := {
	"allow": true,
	"reason": "admin",
	"unrestricted": true,
	"selectors": [],
	"headers": admin_headers,
} if {
	is_admin
} else := claims_decision if {
	# Claims-driven mode (claims.rego): the token's own claims are the selectors.
	claims_mode_applies
} else := {
	"allow": false,
	"reason": concat("", [
		"teams ", concat(",", sort(conflicting_teams)),
		" set different headers (tenants) and grant different selectors: one request would apply each team's selectors in the other's tenant",
	]),
	"unrestricted": false,
	"selectors": [],
	"headers": {},
} if {
	count(conflicting_teams) > 0
} else := {
	"allow": true,
	"reason": concat("", ["teams: ", concat(",", sort(granting_teams))]),
	"unrestricted": false,
	"selectors": sort(alternatives),
	"headers": team_headers,
} if {
	count(granting_teams) > 0
} else := {
	"allow": false,
	"reason": concat("", ["team ", requested_team_name, " does not grant this subject access to upstream ", upstream_name]),
	"unrestricted": false,
	"selectors": [],
	"headers": {},
} if {
	has_key(input.request, "team")
} else := {
	"allow": false,
	"reason": concat("", ["no team grants access to upstream ", upstream_name]),
	"unrestricted": false,
	"selectors": [],
	"headers": {},
}

# --- who is asking --------------------------------------------------------------

# Only strings count; a `groups` claim that is not an array is ignored.
subject_groups contains g if {
	some g in as_array(input.subject.groups)
	is_string(g)
}

# `users` entries match the stable subject id, and the username only where the
# gateway marks it trusted (`usernameTrusted`: static credentials, client
# certificates, providers configured with `claims.trustUsername`). OIDC Core
# §5.1: `preferred_username` may be chosen or changed by its holder, so a
# username alone must not grant what a `users` entry grants.
subject_users contains u if {
	u := input.subject.sub
	is_string(u)
	u != ""
}

subject_users contains u if {
	input.subject.usernameTrusted == true
	u := input.subject.username
	is_string(u)
	u != ""
}

is_admin if {
	some g in as_array(data.lbac.admins.groups)
	g in subject_groups
}

is_admin if {
	some u in as_array(data.lbac.admins.users)
	u in subject_users
}

# Only string values are passed on; no headers configured means none.
default admin_headers := {}

admin_headers := string_values(data.lbac.admins.headers)

# --- which teams grant access -----------------------------------------------------

# A team grants access when the subject belongs to it, it covers the requested
# upstream, and it has at least one usable selector alternative. A team whose
# selectors are empty grants nothing: an empty alternative would mean "match
# everything", so it is never produced (fail closed).
granting_teams contains name if {
	some name, team in as_object(data.lbac.teams)
	selected(name)
	member(team)
	covers_upstream(team)
	some _ in team_alternatives(team)
}

# A request may name the team it acts as (header X-Lbac-Team, input.request.team):
# then that team alone may grant, so a member of teams on different tenants
# picks one per request instead of being refused. It can only narrow: the
# subject must still be a member. A team that is not a string selects nothing.
selected(_) if not has_key(input.request, "team")

selected(name) if input.request.team == name

default requested_team_name := "(not a string)"

requested_team_name := input.request.team if is_string(input.request.team)

member(team) if {
	some g in as_array(team.groups)
	g in subject_groups
}

member(team) if {
	some u in as_array(team.users)
	u in subject_users
}

# No `upstreams` key at all means every upstream. A present but malformed
# value (null, a string, ...) covers nothing.
covers_upstream(team) if not has_key(team, "upstreams")

covers_upstream(team) if {
	some u in as_array(team.upstreams)
	u in {"*", input.request.upstream}
}

# --- what they may see ------------------------------------------------------------

# The union of the granting teams' alternatives (DNF: any one may match).
# A set, so identical alternatives from several teams appear once; sorted in
# `decision` so the output order is deterministic.
alternatives contains alt if {
	some name in granting_teams
	some alt in team_alternatives(data.lbac.teams[name])
}

# A team's usable alternatives, each one a sorted, de-duplicated AND-group
# with names mapped into the backend's vocabulary. A group that is empty or
# holds any malformed matcher is dropped as a whole: dropping only the bad
# matcher would widen access.
team_alternatives(team) := {alt |
	some group in as_array(team.selectors)
	count(as_array(group)) > 0
	every m in group {
		valid_matcher(m)
	}
	alt := sort({{"name": backend_name(m.name), "op": m.op, "value": m.value} | some m in group})
}

valid_matcher(m) if {
	is_string(m.name)
	m.name != ""
	m.op in {"=", "!=", "=~", "!~"}
	is_string(m.value)
}

# Tempo filters on attributes (resource.k8s.namespace.name), not labels, so
# selector names are mapped per request kind when a mapping exists.
backend_name(name) := mapped if {
	mapped := data.lbac.attributes[input.request.kind][name]
	is_string(mapped)
	mapped != ""
} else := name

# Each header the granting teams set, with the sorted, de-duplicated union of
# their values; a value may already list several, "|"-separated
# (tenant-a + tenant-b|tenant-c -> tenant-a|tenant-b|tenant-c, the form Loki,
# Tempo and Mimir accept for multi-tenant reads). Header names are
# case-insensitive, so X-Scope-OrgID and x-scope-orgid from two teams are one
# header, written the way that sorts first.
team_headers[name] := concat("|", sort(values)) if {
	some key in {lower(n) | some n, _ in granted_headers}
	name := min({n | some n, _ in granted_headers; lower(n) == key})
	values := {v |
		some n, vs in granted_headers
		lower(n) == key
		some v in vs
	}
	count(values) > 0
}

# Granting teams whose headers (tenants) differ from another granting team's
# while their selectors differ too. The decision carries one set of selectors
# and one header value for the whole request (X-Scope-OrgID: a|b reads both
# tenants with the same selectors), so merging them would let one team's
# selectors read the other team's tenant: e.g. `namespace: "*"` in tenant-a
# and `namespace: shared` in tenant-b would read all of tenant-b. Denied
# instead (fail closed); teams that differ only in headers, or only in
# selectors, still merge.
conflicting_teams contains t1 if {
	some t1 in granting_teams
	some t2 in granting_teams
	team_header_set(t1) != team_header_set(t2)
	team_alternatives(data.lbac.teams[t1]) != team_alternatives(data.lbac.teams[t2])
}

# A team's headers as {[lower-case name, single value]}.
team_header_set(t) := {[lower(n), v] |
	some n, raw in as_object(data.lbac.teams[t].headers)
	is_string(raw)
	some v in split(raw, "|")
	v != ""
}

# Header name -> set of single values, over the granting teams.
granted_headers[n] := {v |
	some t in granting_teams
	raw := data.lbac.teams[t].headers[n]
	is_string(raw)
	some v in split(raw, "|")
	v != ""
} if {
	some t in granting_teams
	some n, _ in as_object(data.lbac.teams[t].headers)
}

# --- helpers ------------------------------------------------------------------------

upstream_name := input.request.upstream if {
	is_string(input.request.upstream)
} else := "(none)"

as_array(x) := x if {
	is_array(x)
} else := []

as_object(x) := x if {
	is_object(x)
} else := {}

string_values(x) := {k: v | some k, v in as_object(x); is_string(v)}

has_key(obj, key) if {
	is_object(obj)
	_ = obj[key]
}
