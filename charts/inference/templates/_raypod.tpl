{{/* A Ray pod of the RayService (head or worker): the Ray image with polyp-inference, S3 credentials for the model. */}}
{{- define "inference.rayPodSpec" -}}
securityContext:
  {{- include "polyp.podSecurityContext" (dict "runAsUser" 1000) | nindent 2 }}
containers:
  - name: ray-{{ .role }}
    image: {{ include "polyp.image" .root.Values.rayserve.image }}
    env:
      - name: AWS_ACCESS_KEY_ID
        valueFrom:
          secretKeyRef: {name: {{ .root.Values.s3.secretName }}, key: AWS_ACCESS_KEY_ID}
      - name: AWS_SECRET_ACCESS_KEY
        valueFrom:
          secretKeyRef: {name: {{ .root.Values.s3.secretName }}, key: AWS_SECRET_ACCESS_KEY}
      - name: AWS_ENDPOINT_URL
        value: {{ .root.Values.rayserve.s3Endpoint | quote }}
    {{- with .ports }}
    ports:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "polyp.containerSecurityContext" dict | nindent 6 }}
    volumeMounts:
      - {name: ray-logs, mountPath: /tmp/ray}
volumes:
  - name: ray-logs
    emptyDir: {}
{{- end }}
