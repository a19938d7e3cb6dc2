{{/* The release's base name: the release name when it already says "vigil". */}}
{{- define "vigil.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: the same as the kustomize base's. */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "vigil.labels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vigil.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Validate the values that templates cannot express as types. */}}
{{- define "vigil.validate" -}}
{{- if not (has .Values.rbac.scope (list "cluster" "namespaces")) -}}
{{- fail (printf "rbac.scope: must be \"cluster\" or \"namespaces\", got %q" .Values.rbac.scope) -}}
{{- end -}}
{{- if and (eq .Values.rbac.scope "namespaces") (empty .Values.rbac.namespaces) -}}
{{- fail "rbac.namespaces: must list at least one namespace when rbac.scope is \"namespaces\"" -}}
{{- end -}}
{{- end -}}

{{/* The agent's vigil.yaml. */}}
{{- define "vigil.config" -}}
{{- $kube := dict -}}
{{- if eq .Values.rbac.scope "namespaces" -}}
{{- $_ := set $kube "namespaces" .Values.rbac.namespaces -}}
{{- end -}}
{{- $collectors := mergeOverwrite (dict "kube" $kube) (deepCopy .Values.collectors) -}}
{{- $rootfs := ternary "/host/root" "/" .Values.hostRootFsMount.enabled -}}
{{- $cfg := dict
  "global" (dict "node_name" "${NODE_NAME}" "procfs" "/host/proc" "sysfs" "/host/sys" "rootfs" $rootfs)
  "server" (dict "listen_address" (printf ":%v" .Values.service.port))
  "log" (dict "level" .Values.logLevel "format" "json")
  "collectors" $collectors
  "rules" (dict "storage_dir" "/var/lib/vigil/tsdb" "rule_files" (list "embedded:*.rules.yml" "/etc/vigil/rules/*.yaml")
            "query_api" (dict "enabled" .Values.queryAPI))
  "healing" (dict "dry_run" .Values.dryRun "policy_file" "/etc/vigil/policies/policies.yaml"
              "kubernetes" (dict "mode" "auto" "lease_namespace" .Release.Namespace))
-}}
{{- with .Values.exporters -}}
{{- $_ := set $cfg "exporters" . -}}
{{- end -}}
{{- $cfg = mergeOverwrite $cfg (deepCopy .Values.config) -}}
# Vigil's configuration, rendered by the Helm chart from its values.
{{ toYaml $cfg }}
{{- end -}}

