output "urls" {
  value = module.environment.urls
}

output "service_accounts" {
  value = module.environment.service_accounts
}

output "image_repository" {
  value = module.build.image_repository
}
