{{- define "tessera.labels" -}}
app.kubernetes.io/name: tessera
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tessera.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* A generated secret value, kept across upgrades: the one already in the cluster, else `new`. */}}
{{- define "tessera.kept" -}}
{{- $secret := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $secret (index $secret.data .key) -}}
{{ index $secret.data .key | b64dec }}
{{- else -}}
{{ .new }}
{{- end -}}
{{- end -}}

{{/* Probes, the preStop pause and the grace period, the same for both services. */}}
{{- define "tessera.lifecycle" -}}
livenessProbe:
  httpGet: {path: /health, port: http}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /ready, port: http}
  periodSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet: {path: /health, port: http}
  periodSeconds: 2
  failureThreshold: 60
lifecycle:
  preStop:
    # Keep serving while the endpoint removal reaches every proxy; then SIGTERM drains the rest.
    sleep: {seconds: {{ int .Values.preStopSeconds }}}
{{- end -}}
