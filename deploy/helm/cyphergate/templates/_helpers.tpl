{{/* The name of every object: <release>-cyphergate, unless the release is named so already. */}}
{{- define "cyphergate.fullname" -}}
{{- if contains "cyphergate" .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-cyphergate" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cyphergate.selectorLabels" -}}
app.kubernetes.io/name: cyphergate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cyphergate.labels" -}}
{{ include "cyphergate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cyphergate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cyphergate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cyphergate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "cyphergate.policiesConfigMap" -}}
{{- default (printf "%s-policies" (include "cyphergate.fullname" .)) .Values.opa.policies.configMap -}}
{{- end -}}

{{- define "cyphergate.secretName" -}}
{{- required "secrets.existingSecret: name the Secret holding the files config names (the chart never holds secret values)" .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Where the chart puts things; the gateway is told by environment (which overrides the file). */}}
{{- define "cyphergate.dataDir" -}}/var/lib/cyphergate{{- end -}}
{{- define "cyphergate.configFile" -}}/etc/cyphergate/gateway.toml{{- end -}}

{{/* Refuse, with a reason, what the chart must not carry or sets itself. */}}
{{- define "cyphergate.validate" -}}
{{- $config := .Values.config -}}
{{- $neo4j := default dict $config.neo4j -}}
{{- $secret := default dict $neo4j.secret -}}
{{- $audit := default dict $config.audit -}}
{{- $web := default dict $audit.web -}}
{{- if hasKey $neo4j "password" -}}
{{- fail "config.neo4j.password: a secret value in the chart; use neo4j.password_file (a key of secrets.existingSecret) or neo4j.secret" -}}
{{- end -}}
{{- if or (hasKey $secret "value") (eq (toString $secret.source) "env") -}}
{{- fail "config.neo4j.secret: source env carries the secret in the chart; use file or aws_secrets_manager" -}}
{{- end -}}
{{- if gt (float64 (default 0 $neo4j.rotation_interval_s)) 0.0 -}}
{{- fail "config.neo4j.rotation_interval_s: every pod would rotate the one password at once (and a password_file under the read-only Secret mount cannot be rotated); rotate it from one place (cyphergate creds rotate-root, or a Secrets Manager rotation function): the pods follow the store" -}}
{{- end -}}
{{- if hasKey $web "client_secret" -}}
{{- fail "config.audit.web.client_secret: a secret value in the chart; use client_secret_file" -}}
{{- end -}}
{{- $owned := dict "server" (list "host" "port" "bolt_port") "opa" (list "url") "audit" (list "path" "chain_id") "neo4j" (list "leases_path" "lease_user_prefix") -}}
{{- range $section, $keys := $owned -}}
{{- $values := default dict (get $config $section) -}}
{{- range $keys -}}
{{- if hasKey $values . -}}
{{- fail (printf "config.%s.%s is set by the chart (per pod, or to match the pod's ports and volumes)" $section .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.opa.policies.source "bundle") (not .Values.opa.policies.bundle.url) -}}
{{- fail "opa.policies.bundle.url: the bundle service OPA polls" -}}
{{- end -}}
{{- end -}}

{{/* The image's user (Dockerfile: uid 10001); fsGroup lets it write its volume. */}}
{{- define "cyphergate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cyphergate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}
