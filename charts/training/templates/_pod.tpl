{{/* Container shared by the Ray head and workers: same image, same storage settings. */}}
{{- define "training.container" -}}
name: ray-{{ .role }}
image: {{ include "polyp.image" .root.Values.image }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
env:
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef: {name: {{ .root.Values.storage.secretName }}, key: AWS_ACCESS_KEY_ID}
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef: {name: {{ .root.Values.storage.secretName }}, key: AWS_SECRET_ACCESS_KEY}
  - name: AWS_ENDPOINT_URL
    value: {{ .root.Values.storage.s3Endpoint | quote }}
  - name: MLFLOW_S3_ENDPOINT_URL
    value: {{ .root.Values.storage.s3Endpoint | quote }}
  - name: MLFLOW_TRACKING_URI
    value: {{ .root.Values.mlflowTrackingUri | quote }}
  - name: MLFLOW_TRACKING_USERNAME
    valueFrom:
      secretKeyRef: {name: {{ .root.Values.mlflowSecretName }}, key: username}
  - name: MLFLOW_TRACKING_PASSWORD
    valueFrom:
      secretKeyRef: {name: {{ .root.Values.mlflowSecretName }}, key: password}
  - name: POLYP_CHECKPOINT_URI
    value: {{ .root.Values.storage.checkpointUri | quote }}
resources:
  {{- $res := deepCopy .resources }}
  {{- if .gpu }}
  {{- $_ := set $res.limits "nvidia.com/gpu" .gpu }}
  {{- end }}
  {{- toYaml $res | nindent 2 }}
securityContext:
  {{- include "polyp.containerSecurityContext" dict | nindent 2 }}
volumeMounts:
  - {name: ray-logs, mountPath: /tmp/ray}
{{- end }}

{{- define "training.podSpec" -}}
securityContext:
  {{- include "polyp.podSecurityContext" (dict "runAsUser" 1000) | nindent 2 }}
containers:
  - {{- include "training.container" . | nindent 4 }}
    {{- with .ports }}
    ports:
      {{- toYaml . | nindent 6 }}
    {{- end }}
volumes:
  - name: ray-logs
    emptyDir: {}
{{- end }}
