{{/* Labels every child Application carries, so `argocd app list -l` can select a whole environment. */}}
{{- define "platform-apps.labels" -}}
app.kubernetes.io/part-of: polyp-platform
polyp.dev/environment: {{ .Values.environment }}
{{- end }}

{{/* The Helm block shared by upstream and own-chart sources. */}}
{{- define "platform-apps.helm" -}}
releaseName: {{ .name }}
{{- with .component.values }}
valuesObject:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
