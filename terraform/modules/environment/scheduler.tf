# One Cloud Scheduler job per schedule of infra/schedules.yaml that lists this env (default: all).
locals {
  env_schedules = {
    for name, s in local.schedules : name => s if contains(try(s.envs, local.env_names), var.env)
  }
}

resource "google_cloud_scheduler_job" "cron" {
  for_each         = local.env_schedules
  project          = local.project
  region           = local.region
  name             = "jobrelay-${each.key}"
  description      = try(each.value.description, "")
  schedule         = each.value.cron
  time_zone        = try(each.value.time_zone, "Etc/UTC")
  paused           = !try(each.value.enabled, true)
  attempt_deadline = "180s"

  # A retried tick is harmless: its job id derives from the schedule and the scheduled time.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "5s"
    max_backoff_duration = "60s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = "${local.urls.api}/v1/cron/${each.key}"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.sa["scheduler"].email
      audience              = local.urls.api
    }
  }

  depends_on = [google_project_service.api]
}
