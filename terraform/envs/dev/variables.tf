variable "image" {
  description = "The jobrelay image to run, by digest: REGION-docker.pkg.dev/PROJECT/jobrelay/jobrelay@sha256:..."
  type        = string
}
