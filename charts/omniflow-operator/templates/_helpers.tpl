{{/*
The namespace of the operator's namespaced objects: namespace.name when the
chart creates the namespace, else the release namespace.
*/}}
{{- define "omniflow.namespace" -}}
{{- if .Values.namespace.create }}{{ .Values.namespace.name }}{{ else }}{{ .Release.Namespace }}{{ end }}
{{- end }}

{{/* The manager image; the tenant workers run from it unless worker.image says otherwise. */}}
{{- define "omniflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
