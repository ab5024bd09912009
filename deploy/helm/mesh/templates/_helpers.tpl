{{/* Labels on every object of the chart. */}}
{{- define "mesh.labels" -}}
app.kubernetes.io/name: mesh-control-plane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mesh
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* The labels that select the control plane pods (Deployment selector, Service, PDB, anti-affinity). */}}
{{- define "mesh.selectorLabels" -}}
app.kubernetes.io/name: mesh-control-plane
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
