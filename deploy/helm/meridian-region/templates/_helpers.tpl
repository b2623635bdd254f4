{{/*
Names and labels. One release = one region; several regions in one cluster are several
releases (usually one namespace each).
*/}}
{{- define "meridian-region.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meridian-region.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "meridian-%s" (include "meridian-region.regionId" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meridian-region.regionId" -}}
{{- required "region.id is required: this region's id, e.g. eu (MERIDIAN_REGION)" .Values.region.id -}}
{{- end -}}

{{- define "meridian-region.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meridian-region.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meridian-region.labels" -}}
{{ include "meridian-region.selectorLabels" . }}
app.kubernetes.io/part-of: meridian
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
meridian/region: {{ include "meridian-region.regionId" . }}
{{- end -}}

{{- define "meridian-region.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Where the secret variables come from. Exactly one source:
- secrets.existingSecret: a Secret managed outside the chart;
- secrets.externalSecret.enabled: an external-secrets.io ExternalSecret rendered by the chart;
- otherwise secrets.values: a Secret rendered by the chart (the values also land in Helm's
  release record: development and tests only).
*/}}
{{- define "meridian-region.secretMode" -}}
{{- $s := .Values.secrets -}}
{{- if and $s.existingSecret $s.externalSecret.enabled -}}
{{- fail "secrets.existingSecret and secrets.externalSecret.enabled exclude each other: pick one source for the broker's secrets" -}}
{{- end -}}
{{- $inline := list -}}
{{- range $k, $v := $s.values -}}
{{- if $v -}}{{- $inline = append $inline $k -}}{{- end -}}
{{- end -}}
{{- if $s.existingSecret -}}
{{- if $inline -}}
{{- fail (printf "secrets.values (%s) must be empty when secrets.existingSecret is set: the values would be ignored, keep them out of the release" (join ", " (sortAlpha $inline))) -}}
{{- end -}}
existing
{{- else if $s.externalSecret.enabled -}}
{{- if $inline -}}
{{- fail (printf "secrets.values (%s) must be empty when secrets.externalSecret.enabled is true" (join ", " (sortAlpha $inline))) -}}
{{- end -}}
external
{{- else -}}
inline
{{- end -}}
{{- end -}}

{{- define "meridian-region.secretName" -}}
{{- $mode := include "meridian-region.secretMode" . -}}
{{- if eq $mode "existing" -}}
{{- .Values.secrets.existingSecret -}}
{{- else if and (eq $mode "external") .Values.secrets.externalSecret.targetName -}}
{{- .Values.secrets.externalSecret.targetName -}}
{{- else -}}
{{- printf "%s-secrets" (include "meridian-region.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Secret keys = variable names. MERIDIAN_KEK_PREVIOUS is optional (only during a KEK change). */}}
{{- define "meridian-region.requiredSecretKeys" -}}
{{- list "CONTROL_DATABASE_URL" "REGION_DATABASE_URL" "MERIDIAN_KEK" "MERIDIAN_LOCATOR_PEPPER" "MERIDIAN_ADMIN_CLIENT_SECRET" | toJson -}}
{{- end -}}

{{/*
Hook annotations for whatever the pre-install/pre-upgrade migration Job needs before it runs
(its Secret or ExternalSecret, its NetworkPolicy): hooks run before the release's ordinary
resources exist.
*/}}
{{- define "meridian-region.preMigrationHook" -}}
{{- if .Values.migrations.enabled }}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation
{{- end }}
{{- end -}}

{{/* The broker's environment (CONTRACT.md, README.md), shared by the Deployment and the migration Job. */}}
{{- define "meridian-region.env" -}}
{{- $issuer := required "region.issuer is required: the public https URL of this region's broker (MERIDIAN_ISSUER)" .Values.region.issuer -}}
{{- if not (hasPrefix "https://" $issuer) -}}
{{- fail "region.issuer must be an https:// URL: NODE_ENV=production refuses http issuers" -}}
{{- end -}}
{{- $secretName := include "meridian-region.secretName" . -}}
- name: NODE_ENV
  value: production
- name: MERIDIAN_REGION
  value: {{ include "meridian-region.regionId" . | quote }}
- name: MERIDIAN_ISSUER
  value: {{ $issuer | quote }}
- name: MERIDIAN_JURISDICTION
  value: {{ required "region.jurisdiction is required: ISO 3166-1 alpha-2 code or EU (MERIDIAN_JURISDICTION)" .Values.region.jurisdiction | quote }}
- name: HOST
  value: "0.0.0.0"
- name: PORT
  value: {{ .Values.broker.port | int64 | quote }}
- name: MERIDIAN_ADMIN_CLIENT_ID
  value: {{ .Values.broker.adminClientId | quote }}
- name: MERIDIAN_SIGNING_ALG
  value: {{ .Values.broker.signingAlg | quote }}
- name: MERIDIAN_KEY_ROTATION_INTERVAL_SECONDS
  value: {{ .Values.broker.keyRotationIntervalSeconds | int64 | quote }}
- name: MERIDIAN_SHUTDOWN_GRACE_MS
  value: {{ .Values.broker.shutdownGraceMs | int64 | quote }}
- name: MERIDIAN_UPSTREAM_TIMEOUT_MS
  value: {{ .Values.broker.upstreamTimeoutMs | int64 | quote }}
- name: LOG_LEVEL
  value: {{ .Values.broker.logLevel | quote }}
{{- with .Values.broker.trustedProxies }}
- name: MERIDIAN_TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
{{- $managed := list "NODE_ENV" "MERIDIAN_REGION" "MERIDIAN_ISSUER" "MERIDIAN_JURISDICTION" "HOST" "PORT" "MERIDIAN_ADMIN_CLIENT_ID" "MERIDIAN_SIGNING_ALG" "MERIDIAN_KEY_ROTATION_INTERVAL_SECONDS" "MERIDIAN_SHUTDOWN_GRACE_MS" "MERIDIAN_UPSTREAM_TIMEOUT_MS" "LOG_LEVEL" "MERIDIAN_TRUSTED_PROXIES" "MERIDIAN_KEK_PREVIOUS" -}}
{{- $managed = concat $managed (include "meridian-region.requiredSecretKeys" . | fromJsonArray) -}}
{{- range $name, $value := .Values.broker.extraEnv }}
{{- if has $name $managed }}
{{- fail (printf "broker.extraEnv.%s is set by the chart: use its own value (secrets go in the secret source, never in extraEnv)" $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range (include "meridian-region.requiredSecretKeys" . | fromJsonArray) }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ . }}
{{- end }}
- name: MERIDIAN_KEK_PREVIOUS
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: MERIDIAN_KEK_PREVIOUS
      optional: true
{{- end -}}

{{- define "meridian-region.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "meridian-region.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end -}}

{{/*
One egress rule: destinations from `cidrs` (strings or { cidr, except }) and `peers`
(NetworkPolicyPeer objects), on `ports`. A rule with no destination would allow every
destination, so it is never rendered: required targets fail instead.
*/}}
{{- define "meridian-region.egressRule" -}}
{{- $target := index . 0 -}}
{{- $path := index . 1 -}}
{{- $required := index . 2 -}}
{{- if or $target.cidrs $target.peers }}
- to:
  {{- range $target.cidrs }}
    - ipBlock:
        {{- if kindIs "string" . }}
        cidr: {{ . }}
        {{- else }}
        cidr: {{ required (printf "%s.cidrs[].cidr is required" $path) .cidr }}
        {{- with .except }}
        except:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- end }}
  {{- end }}
  {{- with $target.peers }}
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- required (printf "%s.ports must list at least one port" $path) $target.ports | toYaml | nindent 4 }}
{{- else if $required }}
{{- fail (printf "%s needs cidrs or peers: the broker must reach it, and an egress rule without destinations would allow everything" $path) }}
{{- end }}
{{- end -}}
