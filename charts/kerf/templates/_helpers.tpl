{{/* The chart's name. */}}
{{- define "kerf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The fullname: the release name, with the chart's name appended unless it has it. */}}
{{- define "kerf.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kerf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kerf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kerf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kerf.labels" -}}
helm.sh/chart: {{ include "kerf.chart" . }}
{{ include "kerf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kerf.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kerf.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kerf.image" -}}
{{- if .Values.controller.image.digest }}
{{- printf "%s@%s" .Values.controller.image.repository .Values.controller.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.controller.image.repository (default .Chart.AppVersion .Values.controller.image.tag) }}
{{- end }}
{{- end }}

{{/* The provider, checked: `aws` or `kwok`. */}}
{{- define "kerf.cloudProvider" -}}
{{- $p := .Values.settings.cloudProvider | default "aws" }}
{{- if not (has $p (list "aws" "kwok")) }}
{{- fail (printf "settings.cloudProvider: %q is not valid: aws or kwok" $p) }}
{{- end }}
{{- $p }}
{{- end }}

{{/* The lease kerf elects its leader on (LEADER_ELECTION_NAME's default). */}}
{{- define "kerf.leaseName" -}}
karpenter-leader-election
{{- end }}

{{/*
FEATURE_GATES as Karpenter's Deployment writes it, from settings.featureGates. A gate
kerf does not know is an error here rather than a crash-looping pod.
*/}}
{{- define "kerf.featureGates" -}}
{{- $known := dict "nodeRepair" "NodeRepair" "reservedCapacity" "ReservedCapacity" "spotToSpotConsolidation" "SpotToSpotConsolidation" "nodeOverlay" "NodeOverlay" "staticCapacity" "StaticCapacity" }}
{{- $gates := list }}
{{- range $key, $value := .Values.settings.featureGates }}
{{- $name := get $known $key }}
{{- if not $name }}
{{- fail (printf "settings.featureGates.%s: not a feature gate kerf knows; valid: %s" $key (keys $known | sortAlpha | join ", ")) }}
{{- end }}
{{- $gates = append $gates (printf "%s=%t" $name (eq (toString $value) "true")) }}
{{- end }}
{{- join "," $gates }}
{{- end }}

{{/*
Affinity with a labelSelector selecting this release's pods filled into each pod
(anti-)affinity term that has none, as Karpenter's chart does.
*/}}
{{- define "kerf.affinity" -}}
{{- $affinity := deepCopy .Values.affinity }}
{{- $selector := dict "matchLabels" (include "kerf.selectorLabels" . | fromYaml) }}
{{- range $kind := list "podAffinity" "podAntiAffinity" }}
{{- with (get $affinity $kind) }}
{{- range $term := (get . "requiredDuringSchedulingIgnoredDuringExecution" | default list) }}
{{- if not (hasKey $term "labelSelector") }}{{- $_ := set $term "labelSelector" $selector }}{{- end }}
{{- end }}
{{- range $weighted := (get . "preferredDuringSchedulingIgnoredDuringExecution" | default list) }}
{{- $term := get $weighted "podAffinityTerm" }}
{{- if and $term (not (hasKey $term "labelSelector")) }}{{- $_ := set $term "labelSelector" $selector }}{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $affinity }}
{{- end }}

{{- define "kerf.topologySpreadConstraints" -}}
{{- $selector := dict "matchLabels" (include "kerf.selectorLabels" . | fromYaml) }}
{{- $out := list }}
{{- range $c := .Values.topologySpreadConstraints }}
{{- $c := deepCopy $c }}
{{- if not (hasKey $c "labelSelector") }}{{- $_ := set $c "labelSelector" $selector }}{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}
