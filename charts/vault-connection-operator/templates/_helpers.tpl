{{/* Chart name, overridable with nameOverride. */}}
{{- define "vault-connection-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: fullnameOverride, else <release>-<chart> (just <release> when it
already contains the chart name). Cut to 52 characters so that suffixes such as "-leader-election"
still fit the 63-character limit of label values and DNS names.
*/}}
{{- define "vault-connection-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vault-connection-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; never change them across upgrades. */}}
{{- define "vault-connection-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vault-connection-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vault-connection-operator.labels" -}}
helm.sh/chart: {{ include "vault-connection-operator.chart" . }}
{{ include "vault-connection-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vault-connection-operator
{{- end }}

{{- define "vault-connection-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vault-connection-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vault-connection-operator.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Leader election, resolved from the tri-state leaderElection.enabled: null (or absent) means
"on when there is more than one replica". Renders "true" or "false".
*/}}
{{- define "vault-connection-operator.leaderElection" -}}
{{- $explicit := .Values.leaderElection.enabled }}
{{- if kindIs "invalid" $explicit }}
{{- gt (int .Values.replicaCount) 1 }}
{{- else }}
{{- $explicit }}
{{- end }}
{{- end }}

{{/*
VCO_TIER_LIMITS: "name=limit" pairs joined by commas, names sorted (range over a map is sorted).
Numbers go through int64 so that YAML's floats never print as 1e+06.
*/}}
{{- define "vault-connection-operator.tierLimits" -}}
{{- $pairs := list }}
{{- range $tier, $limit := .Values.operator.tierLimits }}
{{- if kindIs "string" $limit }}
{{- $pairs = append $pairs (printf "%s=%s" $tier $limit) }}
{{- else }}
{{- $pairs = append $pairs (printf "%s=%d" $tier (int64 $limit)) }}
{{- end }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
A map as key=value pairs joined by commas, keys sorted (aws.ssmRole.sessionTags).
*/}}
{{- define "vault-connection-operator.keyValues" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
Checks values.schema.json cannot express (it cannot compare one value with another's keys).
Included by the Deployment, so `helm lint`, `helm template` and `helm install` all run them.
*/}}
{{- define "vault-connection-operator.validateValues" -}}
{{- if not (hasKey .Values.operator.tierLimits .Values.operator.defaultTier) }}
{{- include "vault-connection-operator.invalid" (printf "operator.defaultTier %q is not a key of operator.tierLimits (known tiers: %s); add it to operator.tierLimits or pick one of those" .Values.operator.defaultTier (keys .Values.operator.tierLimits | sortAlpha | join ", ")) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (eq (include "vault-connection-operator.leaderElection" .) "false") }}
{{- include "vault-connection-operator.invalid" (printf "replicaCount is %d but leaderElection.enabled is false: replicas would write to SSM concurrently; enable leader election or set replicaCount to 1" (int .Values.replicaCount)) }}
{{- end }}
{{- end }}

{{/*
Stops rendering with the message given as the context. `fail` does that for `helm template` and
`helm install`, but `helm lint` only logs a `fail` and carries on; so, for lint, follow it with a
call that errors in every mode and carries the same message (an include of a template that
cannot exist, named after the message).
*/}}
{{- define "vault-connection-operator.invalid" -}}
{{- fail . }}
{{- include (printf "invalid values: %s" .) dict }}
{{- end }}

{{/*
What the operator needs of VaultConnections themselves: read them, update them and their
finalizers (never create or delete them: people do). In namespaced mode these are bound
cluster-wide, so they outlive a watched namespace's own Roles while that namespace is deleted
and the operator removes its finalizers (the admission policy below confines them to the
watched namespaces).
*/}}
{{- define "vault-connection-operator.connectionRules" -}}
- apiGroups: ["vaultconnections.io"]
  resources: ["vaultconnections"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["vaultconnections.io"]
  resources: ["vaultconnections/finalizers"]
  verbs: ["update"]
{{- end }}

{{/*
What the operator needs in every namespace it watches besides the connections: write their
status; read labelled Secrets (RBAC cannot filter by label; the operator lists with a label
selector and reads data only for referenced Secrets); and record events.
*/}}
{{- define "vault-connection-operator.namespacedRules" -}}
- apiGroups: ["vaultconnections.io"]
  resources: ["vaultconnections/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Cluster-scoped reads in every mode: namespaces (tier labels, and their uids, which the
parameters' ownership tags name) and the operator's own CRD (a connection deleted because its CRD
is being deleted keeps its parameter).
*/}}
{{- define "vault-connection-operator.namespaceRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["vaultconnections.vaultconnections.io"]
  verbs: ["get"]
{{- end }}

{{/*
A number as the operator's flag parser expects it: whole numbers without exponent or decimals
(YAML numbers reach templates as floats, which print 1000000 as 1e+06), fractions as they are.
*/}}
{{- define "vault-connection-operator.number" -}}
{{- if eq (float64 (int64 .)) (float64 .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* A list of strings as a CEL list's items: 'a', 'b'. */}}
{{- define "vault-connection-operator.quotedList" -}}
{{- $items := list }}
{{- range . }}{{ $items = append $items (printf "'%s'" .) }}{{ end }}
{{- join ", " $items }}
{{- end }}
