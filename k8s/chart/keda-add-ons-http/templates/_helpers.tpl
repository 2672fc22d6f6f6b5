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

{{/* Pod template labels (no part-of: kustomize leaves templates alone). dict: root, name, component. */}}
{{- define "khd.podLabels" -}}
{{- $l := dict "app.kubernetes.io/name" .name "app.kubernetes.io/component" .component -}}
{{- toYaml (merge $l (.root.Values.additionalLabels | default dict)) -}}
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
