{{/* The pod a call names, as a NetworkPolicy peer (a dict): its namespace and labels. */}}
{{- define "network-policies.peer" -}}
{{- $pod := index .root.Values.pods .name -}}
{{- $namespace := dict "kubernetes.io/metadata.name" ($pod.namespace | default .root.Release.Namespace) -}}
{{- dict "namespaceSelector" (dict "matchLabels" $namespace) "podSelector" (dict "matchLabels" $pod.labels) | toYaml -}}
{{- end }}

{{/* A rule: its peer under `key` (from, to) unless that is all, and its TCP ports unless every port. */}}
{{- define "network-policies.rule" -}}
{{- $rule := dict -}}
{{- if .peer }}{{ $_ := set $rule .key (list .peer) }}{{ end -}}
{{- $ports := list -}}
{{- range .ports }}{{ $ports = append $ports (dict "protocol" "TCP" "port" .) }}{{ end -}}
{{- if $ports }}{{ $_ := set $rule "ports" $ports }}{{ end -}}
{{- toYaml $rule -}}
{{- end }}
