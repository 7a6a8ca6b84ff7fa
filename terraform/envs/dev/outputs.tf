output "urls" {
  value = module.environment.urls
}

output "service_accounts" {
  value = module.environment.service_accounts
}

output "image" {
  description = "The image digest this env runs (the release pipeline promotes stg's to prod)."
  value       = var.image
}
