resource "google_monitoring_alert_policy" "dead_letters" {
  project               = local.project
  display_name          = "jobrelay ${var.env}: dead letters"
  combiner              = "OR"
  severity              = var.env == "prod" ? "ERROR" : "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "a job was dead-lettered"
    condition_threshold {
      filter          = "${local.m.dead_letters} AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.type"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Dead jobs of env ${var.env}: `jobrelay dead-letters list --env ${var.env}`, group by fingerprint, fix, then redrive (dry-run first). Logs: `labels.component=\"deadletter\"`."
  }
}

resource "google_monitoring_alert_policy" "failure_rate" {
  project               = local.project
  display_name          = "jobrelay ${var.env}: job failure rate"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "more than ${local.failure_ratio * 100}% of job attempts fail (worker, 10 min)"
    condition_threshold {
      filter             = "${local.m.failed} AND resource.type=\"cloud_run_revision\""
      denominator_filter = "${local.m.started} AND resource.type=\"cloud_run_revision\""
      comparison         = "COMPARISON_GT"
      threshold_value    = local.failure_ratio
      duration           = "600s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Failed attempts / started attempts in ${var.env}. Logs: `jsonPayload.message:\" attempt \" AND jsonPayload.message:\" failed (\"`; group by labels.type."
  }
}

resource "google_monitoring_alert_policy" "oldest_queued" {
  project               = local.project
  display_name          = "jobrelay ${var.env}: jobs waiting too long"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  # Cloud Tasks exports no "oldest task" gauge; the delay between a task's scheduled time and its
  # attempt is the closest: it grows when a queue cannot keep up.
  conditions {
    display_name = "p95 Cloud Tasks attempt delay above ${local.oldest_task_delay_ms / 60000} min"
    condition_threshold {
      filter          = local.m.queue_delay
      comparison      = "COMPARISON_GT"
      threshold_value = local.oldest_task_delay_ms
      duration        = "600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.label.queue_id"]
      }
    }
  }

  # Pool messages stay unacked while their job runs, so the bar sits above the longest heavy job.
  conditions {
    display_name = "oldest pool message older than ${local.pool_oldest_age_seconds} s"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.m.pool}"
      comparison      = "COMPARISON_GT"
      threshold_value = local.pool_oldest_age_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "p95_duration" {
  project               = local.project
  display_name          = "jobrelay ${var.env}: p95 job duration"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  # One worker request is one job attempt of a tasks-route class: its latency is the job's run time.
  conditions {
    display_name = "worker p95 request latency above ${local.p95_duration_seconds} s"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND ${local.m.worker}"
      comparison      = "COMPARISON_GT"
      threshold_value = local.p95_duration_seconds * 1000
      duration        = "900s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
      }
    }
  }

  conditions {
    display_name = "job p95 duration (log metric) above ${local.p95_duration_seconds} s"
    condition_threshold {
      filter          = local.m.duration
      comparison      = "COMPARISON_GT"
      threshold_value = local.p95_duration_seconds
      duration        = "900s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["metric.label.type"]
      }
    }
  }
}

resource "google_monitoring_alert_policy" "breaker_opened" {
  project               = local.project
  display_name          = "jobrelay ${var.env}: circuit breaker opened"
  combiner              = "OR"
  severity              = var.env == "prod" ? "ERROR" : "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "a job type's circuit breaker opened (the type paused itself)"
    condition_threshold {
      filter          = "${local.m.breaker} AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.type"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A job type in ${var.env} failed often enough to pause itself (infra/breakers.yaml). Its jobs wait, using no attempts; after the cool-down one probe runs and its success resumes the type. `jobrelay --env ${var.env} types` shows it; `jobrelay resume TYPE` resumes it by hand. Logs: `jsonPayload.message:\"circuit breaker\"`."
  }
}
