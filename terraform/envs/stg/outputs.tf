output "urls" {
  value = module.environment.urls
}

output "service_accounts" {
  value = module.environment.service_accounts
}
