output "image_repository" {
  value = "${local.region}-docker.pkg.dev/${local.project}/${local.repo_id}/jobrelay"
}

output "deployer" {
  value = google_service_account.deployer.email
}
