output "project" {
  value = local.project
}

output "urls" {
  description = "Cloud Run URLs of the api, worker and deadletter services."
  value       = local.urls
}

output "service_accounts" {
  value = local.sa
}

output "queues" {
  value = { for k, q in google_cloud_tasks_queue.class : k => q.name }
}
