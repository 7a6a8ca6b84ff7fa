variable "env" {
  description = "Which env of infra/environments.yaml to watch (prod, stg or dev)."
  type        = string
  validation {
    condition     = contains(["prod", "stg", "dev"], var.env)
    error_message = "env must be one of prod, stg, dev."
  }
}

variable "notification_channels" {
  description = "Monitoring notification channel ids the alerts page (none: alerts show in Cloud Console only)."
  type        = list(string)
  default     = []
}
