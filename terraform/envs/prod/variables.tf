variable "image" {
  description = "The jobrelay image to run, by digest: REGION-docker.pkg.dev/PROJECT/jobrelay/jobrelay@sha256:..."
  type        = string
}

variable "source_repository" {
  description = <<-EOT
    The Cloud Build 2nd-gen repository the deploy triggers watch
    (projects/PROJECT/locations/REGION/connections/CONNECTION/repositories/REPO); "" leaves the
    triggers out. Cloud Build passes it back from the trigger's _SOURCE_REPOSITORY substitution.
  EOT
  type        = string
}
