{{/* Resource name: the release name, which Argo CD sets to the component name. */}}
{{- define "polyp.fullname" -}}
{{- .Values.nameOverride | default .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "polyp.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "polyp.labels" -}}
{{ include "polyp.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image | default dict).tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: polyp-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/*
Image reference "repository:tag". Tags must be immutable: a floating tag would let a
cluster run code that git does not name.
*/}}
{{- define "polyp.image" -}}
{{- $tag := required "image.tag is required (an immutable tag: a version or a git SHA)" .tag | toString -}}
{{- if has $tag (list "latest" "main" "master" "stable" "edge" "dev") -}}
{{- fail (printf "image.tag %q floats; pin a version or a git SHA" $tag) -}}
{{- end -}}
{{- printf "%s:%s" .repository $tag -}}
{{- end }}

{{/* Pod-level security context: never root, default seccomp. */}}
{{- define "polyp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser | default 10001 }}
runAsGroup: {{ .runAsUser | default 10001 }}
fsGroup: {{ .runAsUser | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context. */}}
{{- define "polyp.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnlyRootFilesystem | default false }}
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* ClusterIP Service on the pod's "http" port. */}}
{{- define "polyp.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "polyp.fullname" . }}
  labels:
    {{- include "polyp.labels" . | nindent 4 }}
spec:
  selector:
    {{- include "polyp.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .Values.service.port }}
      targetPort: http
{{- end }}
