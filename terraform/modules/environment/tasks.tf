# Cloud Tasks queues: one per shard of each class of infra/classes.yaml (one queue dispatches at most
# 500 tasks/s; docs/capacity.md). Shard 0 keeps the class's queue id, shard i > 0 is "<queue>-<i>", as
# jobrelay.settings.JobClass.queues names them; each shard gets the class's rate limits divided by
# its shard count, and the class's retry policy.
locals {
  queue_shards = merge([
    for name, c in local.classes : {
      for i in range(try(c.shards, 1)) :
      (i == 0 ? c.queue : "${c.queue}-${i}") => merge(c, { class = name, shard = i, shards = try(c.shards, 1) })
    }
  ]...)
}

resource "google_cloud_tasks_queue" "class" {
  for_each = local.queue_shards
  project  = local.project
  location = local.region
  name     = each.key

  rate_limits {
    max_dispatches_per_second = each.value.rate_limits.max_dispatches_per_second / each.value.shards
    max_concurrent_dispatches = ceil(each.value.rate_limits.max_concurrent_dispatches / each.value.shards)
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
