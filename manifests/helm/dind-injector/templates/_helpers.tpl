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

{{/* The name of a cluster-scoped object: the release's namespace is part of
     it, so two releases of the same name in two namespaces do not collide. */}}
{{- define "dind-injector.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "dind-injector.fullname" .) | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{/* "true" when the release runs the webhook (delivery: webhook), "" when the
     apiserver injects through admission policies (delivery: policy). */}}
{{- define "dind-injector.webhookDelivery" -}}
{{- if eq .Values.delivery "webhook" -}}true{{- end -}}
{{- end -}}

{{/* The namespaces both deliveries select: not the release's, not the
     excluded ones, not those opted out by label, and the extra expressions. */}}
{{- define "dind-injector.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml (uniq (prepend .Values.webhook.excludedNamespaces .Release.Namespace)) | nindent 6 }}
  - key: {{ .Values.webhook.optOutLabel.key }}
    operator: NotIn
    values: [{{ .Values.webhook.optOutLabel.value | quote }}]
  {{- with .Values.webhook.namespaceSelectorExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* "true" when the PodDisruptionBudget lets a drain evict a replica:
     minAvailable (a number, or a percentage rounded up as the disruption
     controller does) below replicaCount. A PDB that allows nothing would
     block every node drain, so the chart leaves it out instead. */}}
{{- define "dind-injector.pdbAllowsDisruption" -}}
{{- $min := .Values.podDisruptionBudget.minAvailable -}}
{{- $replicas := int .Values.replicaCount -}}
{{- if kindIs "string" $min -}}
{{- $min = ceil (divf (mulf $replicas (trimSuffix "%" $min | float64)) 100) | int -}}
{{- end -}}
{{- if lt (int $min) $replicas -}}true{{- end -}}
{{- end -}}

{{/* The chart-generated certificate to keep, read back from the existing
     Secret (dict "existing" <Secret or empty> "token" <regenerateToken>), as
     JSON {crt, key, ca, token}; {} when a new one is to be issued: no Secret,
     an incomplete one, or a regenerateToken other than the one it was issued
     or kept under. The token is remembered in the Secret, so the same value
     again — as `helm upgrade --reuse-values` passes it — keeps the pair. */}}
{{- define "dind-injector.keptCertificate" -}}
{{- $data := default dict (and .existing .existing.data) -}}
{{- $stored := "" -}}
{{- if .existing -}}
{{- $stored = dig "metadata" "annotations" "dind-injector.io/regenerate-token" "" .existing -}}
{{- end -}}
{{- if and (index $data "tls.crt") (index $data "tls.key") (index $data "ca.crt") (or (not .token) (eq .token $stored)) -}}
{{- dict "crt" (index $data "tls.crt") "key" (index $data "tls.key") "ca" (index $data "ca.crt") "token" $stored | toJson -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}
