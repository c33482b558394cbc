{{/* Chart name, truncated to the 63 characters DNS labels allow. */}}
{{- define "lbac-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lbac-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lbac-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lbac-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lbac-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lbac-gateway.labels" -}}
helm.sh/chart: {{ include "lbac-gateway.chart" . }}
{{ include "lbac-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "lbac-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lbac-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret mounted at /etc/lbac-gateway/secrets ("" = none). */}}
{{- define "lbac-gateway.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else if .Values.secret.create }}
{{- include "lbac-gateway.fullname" . }}
{{- end }}
{{- end }}

{{- define "lbac-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The gateway config file: .Values.config plus what the chart owns — the
listeners (ports.*, metrics.enabled) and, with bundle.enabled, policy.bundle
pointing at the mounted Secret files and the persist volume.
*/}}
{{- define "lbac-gateway.config" -}}
{{- $cfg := deepCopy (default dict .Values.config) }}
{{- $server := default dict (get $cfg "server") }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $server "adminListen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- else }}
{{- $_ := unset $server "adminListen" }}
{{- end }}
{{- $_ := set $cfg "server" $server }}
{{- if .Values.bundle.enabled }}
{{- if not .Values.bundle.url }}{{ fail "bundle.enabled needs bundle.url" }}{{ end }}
{{- $policy := default dict (get $cfg "policy") }}
{{- if hasKey $policy "wasm" }}{{ fail "bundle.enabled: remove config.policy.wasm (a policy comes from either a wasm file or a bundle)" }}{{ end }}
{{- $b := dict "url" .Values.bundle.url "resource" .Values.bundle.resource "polling" .Values.bundle.polling "timeoutMs" (int .Values.bundle.timeoutMs) }}
{{- if .Values.bundle.tokenSecretKey }}
{{- if not (include "lbac-gateway.secretName" .) }}{{ fail "bundle.tokenSecretKey needs secret.create or secret.existingSecret" }}{{ end }}
{{- $_ := set $b "auth" (dict "type" "bearer" "tokenFile" (printf "/etc/lbac-gateway/secrets/%s" .Values.bundle.tokenSecretKey)) }}
{{- end }}
{{- with .Values.bundle.signing }}
{{- if .publicKeySecretKey }}
{{- $key := dict "keyid" .keyid "algorithm" .algorithm "publicKeyFile" (printf "/etc/lbac-gateway/secrets/%s" .publicKeySecretKey) }}
{{- $signing := dict "keys" (list $key) }}
{{- if .scope }}{{ $_ := set $signing "scope" .scope }}{{ end }}
{{- $_ := set $b "signing" $signing }}
{{- end }}
{{- end }}
{{- if .Values.bundle.persist }}
{{- $_ := set $b "persistDir" "/var/lib/lbac-gateway/bundle" }}
{{- end }}
{{- $_ := set $policy "bundle" $b }}
{{- $_ := set $cfg "policy" $policy }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
