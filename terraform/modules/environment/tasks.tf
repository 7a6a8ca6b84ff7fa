# One Cloud Tasks queue per class of infra/classes.yaml, with its rate limits and retry policy.
resource "google_cloud_tasks_queue" "class" {
  for_each = local.classes
  project  = local.project
  location = local.region
  name     = each.value.queue

  rate_limits {
    max_dispatches_per_second = each.value.rate_limits.max_dispatches_per_second
    max_concurrent_dispatches = each.value.rate_limits.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = each.value.retry.max_attempts
    min_backoff        = "${each.value.retry.min_backoff_seconds}s"
    max_backoff        = "${each.value.retry.max_backoff_seconds}s"
    max_doublings      = each.value.retry.max_doublings
    max_retry_duration = "${try(each.value.retry.max_retry_duration_seconds, 0)}s"
  }

  stackdriver_logging_config {
    # Every attempt in dev (debugging), a sample elsewhere (cost).
    sampling_ratio = var.env == "dev" ? 1.0 : 0.1
  }

  depends_on = [google_project_service.api]
}
