variable "image" {
  description = "The jobrelay image, by digest (the same one the Cloud Run services run)."
  type        = string
  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be a digest reference (...@sha256:<64 hex>), never a tag."
  }
}
