{{/* Names. */}}
{{- define "dind-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dind-injector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dind-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dind-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dind-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "dind-injector.labels" -}}
helm.sh/chart: {{ include "dind-injector.chart" . }}
app.kubernetes.io/name: {{ include "dind-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dind-injector
{{- end -}}

{{- define "dind-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dind-injector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The chart's image: repository:tag, or repository@digest when pinned. */}}
{{- define "dind-injector.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The config file: the values, with injector.image defaulting to the chart's image. */}}
{{- define "dind-injector.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if not $config.injector.image -}}
{{- $_ := set $config.injector "image" (include "dind-injector.image" .) -}}
{{- end -}}
{{- /* "" disables, like null. A null set by the user removes the key from the
     merged values (Helm's rule), so a missing key also means null here:
     otherwise the binary's default would silently switch it back on. */ -}}
{{- range $key := list "workDir" "externalsDir" -}}
{{- if or (not (hasKey $config.runner $key)) (eq (toString (index $config.runner $key)) "") -}}
{{- $_ := set $config.runner $key nil -}}
{{- end -}}
{{- end -}}
{{- if or (not (hasKey $config.dind "storageSizeLimit")) (eq (toString $config.dind.storageSizeLimit) "") -}}
{{- $_ := set $config.dind "storageSizeLimit" nil -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "dind-injector.tlsSecretName" -}}
{{- printf "%s-tls" (include "dind-injector.fullname" .) -}}
{{- end -}}

{{- define "dind-injector.serviceDNSNames" -}}
{{- $svc := include "dind-injector.fullname" . -}}
{{- list (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson -}}
{{- end -}}
