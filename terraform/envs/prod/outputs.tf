output "urls" {
  value = module.environment.urls
}

output "service_accounts" {
  value = module.environment.service_accounts
}

output "image_repository" {
  value = module.pipeline.image_repository
}

output "image" {
  description = "The image digest this env runs (the release pipeline promotes stg's to prod)."
  value       = var.image
}
