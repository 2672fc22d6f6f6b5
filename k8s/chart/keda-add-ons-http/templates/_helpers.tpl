{{/*
Names are fixed, as in k8s/ and the Go chart: <chart name>-<component>.
*/}}
{{- define "khd.name" -}}
{{- printf "%s-%s" .root.Chart.Name .component -}}
{{- end -}}

{{/*
Metadata labels: app.kubernetes.io/name (and component) of a component, the
part-of label kustomize adds in k8s/kustomization.yaml, additionalLabels
(which cannot replace those). dict: root, name (optional), component (optional).
*/}}
{{- define "khd.labels" -}}
{{- $l := dict "app.kubernetes.io/part-of" "keda-http-add-on" -}}
{{- with .name }}{{ $_ := set $l "app.kubernetes.io/name" . }}{{ end -}}
{{- with .component }}{{ $_ := set $l "app.kubernetes.io/component" . }}{{ end -}}
{{- toYaml (merge $l (.root.Values.additionalLabels | default dict)) -}}
{{- end -}}

{{/*
Selector of a Deployment's pods, for the Deployment and for the Services and
PodDisruptionBudget that select them: app.kubernetes.io/name of ours, or, when
the Deployment already exists with another selector (a Go chart install, the
Go add-on's kustomize config, an older release of ours), that selector. A
Deployment's selector cannot change, and Services that keep selecting the old
pods while the new ones roll out lose no request (`helm upgrade` from the Go
chart). `helm template` has no cluster: it renders ours. dict: root,
deployment (its name), name (our label value).
*/}}
{{- define "khd.selectorLabels" -}}
{{- $d := lookup "apps/v1" "Deployment" .root.Release.Namespace .deployment | default dict -}}
{{- $sel := dig "spec" "selector" "matchLabels" dict $d -}}
{{- if $sel }}{{ toYaml $sel }}{{ else }}app.kubernetes.io/name: {{ .name }}{{ end -}}
{{- end -}}

{{/*
Pod template labels (no part-of: kustomize leaves templates alone); the
selector's labels win. dict: root, name, component, selector (YAML of
khd.selectorLabels).
*/}}
{{- define "khd.podLabels" -}}
{{- $l := dict "app.kubernetes.io/name" .name "app.kubernetes.io/component" .component -}}
{{- toYaml (merge (fromYaml .selector) $l (.root.Values.additionalLabels | default dict)) -}}
{{- end -}}

{{/* Image reference. dict: root, image. */}}
{{- define "khd.image" -}}
{{- printf "%s:%s" .image (.root.Values.images.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* Pod security context of a component. dict: root, component (operator|scaler|interceptor). */}}
{{- define "khd.podSecurityContext" -}}
{{- $all := .root.Values.podSecurityContext -}}
{{- toYaml (get $all .component | default (omit $all "operator" "scaler" "interceptor")) -}}
{{- end -}}

{{/* Container security context of a component. dict: root, component. */}}
{{- define "khd.securityContext" -}}
{{- $all := .root.Values.securityContext -}}
{{- toYaml (get $all .component | default (omit $all "operator" "scaler" "interceptor")) -}}
{{- end -}}

{{/* imagePullPolicy line when a policy is set. */}}
{{- define "khd.pullPolicy" -}}
{{- with . }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{/* Env entries of the LOG_LEVEL when not the programs' default, and of extraEnvs. dict: level, extra. */}}
{{- define "khd.commonEnv" -}}
{{- if and .level (ne .level "info") }}
- name: LOG_LEVEL
  value: {{ .level | quote }}
{{- end }}
{{- if and .format (ne .format "json") }}
- name: LOG_FORMAT
  value: {{ .format | quote }}
{{- end }}
{{- range $k, $v := .extra }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* Pod-level scheduling and pull secrets of a component's values. */}}
{{- define "khd.podScheduling" -}}
{{- with .imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod template annotations of a component's values, if any. */}}
{{- define "khd.podAnnotations" -}}
{{- with .podAnnotations }}
annotations:
{{- range $k, $v := . }}
  {{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* ServiceAccount annotations of a component's values, if any. */}}
{{- define "khd.saAnnotations" -}}
{{- with .serviceAccount }}
{{- with .annotations }}
annotations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Container args of a program's logging values: the zap time encoding, when set. */}}
{{- define "khd.logArgs" -}}
{{- with .timeEncoding }}
args:
  - --zap-time-encoding={{ . }}
{{- end }}
{{- end -}}

{{/* Env entries of a program's tracing values (.tracing), and of its OTLP metrics (.metrics.otlp), when enabled. */}}
{{- define "khd.tracingEnv" -}}
{{- if (dig "metrics" "otlp" "enabled" false .) }}
- name: OTEL_EXPORTER_OTLP_METRICS_ENABLED
  value: "true"
{{- end }}
{{- with .tracing }}
{{- if .enabled }}
- name: OTEL_EXPORTER_OTLP_TRACES_ENABLED
  value: "true"
- name: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
  value: {{ .protocol | quote }}
{{- end }}
{{- end }}
{{- end -}}
