variable "repository" {
  description = <<-EOT
    The Cloud Build (2nd gen) repository the triggers watch, as a resource id:
    projects/PROJECT/locations/REGION/connections/CONNECTION/repositories/REPO.
    Connecting GitHub is a one-time step in the console (docs/deploy.md); an empty string skips the triggers.
  EOT
  type        = string
  default     = ""
}

variable "pool_service_account" {
  description = "The Elastic Muscle VMs' service account, which pulls the image."
  type        = string
}
