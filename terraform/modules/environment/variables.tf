variable "env" {
  description = "Which env of infra/environments.yaml this instance serves (prod, stg or dev)."
  type        = string
  validation {
    condition     = contains(["prod", "stg", "dev"], var.env)
    error_message = "env must be one of prod, stg, dev."
  }
}

variable "image" {
  description = "The jobrelay image, by digest: REGION-docker.pkg.dev/PROJECT/REPO/jobrelay@sha256:..."
  type        = string
  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be a digest reference (...@sha256:<64 hex>), never a tag."
  }
}
