{{/* Chart name, 63 characters at most. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, plus the chart name unless it is in there. */}}
{{- define "vigil.fullname" -}}
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

{{- define "vigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ include "vigil.chart" . }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end -}}

{{/* Labels selecting the operator pods (also the metrics and webhook Services' selectors). */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vigil.operatorSelectorLabels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "vigil.operatorName" -}}
{{- printf "%s-operator" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vigil.metricsServiceName" -}}
{{- printf "%s-operator-metrics" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.webhookServiceName" -}}
{{- printf "%s-webhook" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.webhookSecretName" -}}
{{- if .Values.webhook.tls.existingSecret -}}
{{- .Values.webhook.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-webhook-tls" (include "vigil.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* image reference: repository:tag or repository@digest; the tag defaults to appVersion.
     Call with (dict "image" .Values.image "root" .). */}}
{{- define "vigil.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The webhook's serving certificate, as YAML {ca, crt, key} (base64 PEM each).

Generated at install with genCA / genSignedCert for the webhook Service's DNS names. On upgrade the
existing Secret is looked up and reused, so certificates do not rotate on every upgrade. (Where
lookup cannot reach the cluster - `helm template`, `--dry-run`, GitOps tools that render with
`helm template` - a fresh pair is generated each time; the Secret, the caBundle and the operator
pods' checksum annotation still agree, so the pods restart onto the new certificate.)

Generated once per render: the result is kept in .Values.webhook (one map shared by every template
of the chart), so the Secret, the ValidatingWebhookConfiguration's caBundle and the Deployment's
checksum annotation, rendered from different files, all see the same certificate.
*/}}
{{- define "vigil.webhookTLS" -}}
{{- if not (hasKey .Values.webhook "_generatedTLS") -}}
{{- $tls := dict "ca" "" "crt" "" "key" "" -}}
{{- if .Values.webhook.tls.existingSecret -}}
{{- $_ := set $tls "ca" .Values.webhook.tls.caBundle -}}
{{- else -}}
{{- $secretName := include "vigil.webhookSecretName" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName | default dict -}}
{{- $crt := dig "data" "tls.crt" "" $existing -}}
{{- $key := dig "data" "tls.key" "" $existing -}}
{{- $ca := dig "data" "ca.crt" "" $existing -}}
{{- if and $crt $key $ca -}}
{{- $_ := set $tls "crt" $crt -}}
{{- $_ := set $tls "key" $key -}}
{{- $_ := set $tls "ca" $ca -}}
{{- else -}}
{{- $svc := include "vigil.webhookServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $days := int .Values.webhook.tls.validityDays -}}
{{- $caCert := genCA (printf "%s-webhook-ca" (include "vigil.fullname" .)) $days -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $names $days $caCert -}}
{{- $_ := set $tls "crt" ($cert.Cert | b64enc) -}}
{{- $_ := set $tls "key" ($cert.Key | b64enc) -}}
{{- $_ := set $tls "ca" ($caCert.Cert | b64enc) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values.webhook "_generatedTLS" $tls -}}
{{- end -}}
{{- toYaml (get .Values.webhook "_generatedTLS") -}}
{{- end -}}
