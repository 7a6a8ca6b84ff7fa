# Log-based metrics, one dashboard and the alert policies of one env's project.
locals {
  infra_dir    = "${path.module}/../../../infra"
  environments = yamldecode(file("${local.infra_dir}/environments.yaml"))
  classes      = yamldecode(file("${local.infra_dir}/classes.yaml")).classes
  project      = local.environments.environments[var.env].project

  queues = [for c in values(local.classes) : c.queue]
  # A heavy job holds its pool message (unacked, deadline extended) for its whole run.
  longest_muscle_timeout = max(concat([0], [for c in values(local.classes) : c.timeout_seconds if c.route == "muscle"])...)

  # Thresholds, in one place.
  oldest_task_delay_ms    = 5 * 60 * 1000
  pool_oldest_age_seconds = local.longest_muscle_timeout + 1800
  failure_ratio           = 0.2
  p95_duration_seconds    = 600

  metric_prefix = "logging.googleapis.com/user"
  job_labels = {
    env   = "the env the job belongs to"
    type  = "the job type"
    class = "the job class"
  }
}

# --- log-based metrics ----------------------------------------------------------------------------
# The services log JSON lines whose "logging.googleapis.com/labels" become LogEntry labels, so the
# job's env/type/class are `labels.*` here. job_id stays out of metric labels (unbounded cardinality).

resource "google_logging_metric" "dead_letters" {
  project     = local.project
  name        = "jobrelay/dead_letters"
  description = "Dead letters recorded by the dead-letter service (one per dead job)."
  filter      = "labels.component=\"deadletter\" AND severity=\"WARNING\" AND jsonPayload.message:\"dead letter recorded\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "env"
      value_type  = "STRING"
      description = local.job_labels.env
    }
    labels {
      key         = "type"
      value_type  = "STRING"
      description = local.job_labels.type
    }
  }
  label_extractors = {
    env  = "EXTRACT(labels.env)"
    type = "EXTRACT(labels.type)"
  }
}

resource "google_logging_metric" "job_attempts" {
  for_each = {
    started = { filter = "severity=\"INFO\" AND jsonPayload.message:\"started (attempt\"", what = "Job attempts started" }
    failed  = { filter = "severity=\"WARNING\" AND jsonPayload.message:\" failed (\" AND jsonPayload.message:\" attempt \"", what = "Job attempts failed (retrying or final)" }
  }
  project     = local.project
  name        = "jobrelay/job_attempts_${each.key}"
  description = "${each.value.what}, from the runtime's log lines (worker and pool)."
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    dynamic "labels" {
      for_each = local.job_labels
      content {
        key         = labels.key
        value_type  = "STRING"
        description = labels.value
      }
    }
  }
  label_extractors = { for k in keys(local.job_labels) : k => "EXTRACT(labels.${k})" }
}

# Job run time. Needs a numeric `duration_seconds` field on the runtime's finish lines, which the code
# does not log yet (see docs/deploy.md); until it does this metric stays empty and the p95 alert
# relies on the worker's request latency, which measures the same run for tasks-route jobs.
resource "google_logging_metric" "job_duration" {
  project         = local.project
  name            = "jobrelay/job_duration"
  description     = "Seconds one job attempt ran, from jsonPayload.duration_seconds on finish lines."
  filter          = "jsonPayload.duration_seconds:*"
  value_extractor = "EXTRACT(jsonPayload.duration_seconds)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
    dynamic "labels" {
      for_each = local.job_labels
      content {
        key         = labels.key
        value_type  = "STRING"
        description = labels.value
      }
    }
  }
  label_extractors = { for k in keys(local.job_labels) : k => "EXTRACT(labels.${k})" }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.4
      scale              = 0.05
    }
  }
}

# Circuit breakers (jobrelay.breakers, infra/breakers.yaml): one WARNING line each time a type's
# breaker opens (or opens again after a failed probe) and the type pauses itself.
resource "google_logging_metric" "breaker_opened" {
  project     = local.project
  name        = "jobrelay/breaker_opened"
  description = "Circuit breakers that opened: a job type paused itself after too many failed attempts."
  filter      = "severity=\"WARNING\" AND jsonPayload.message:\"circuit breaker opened\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "env"
      value_type  = "STRING"
      description = local.job_labels.env
    }
    labels {
      key         = "type"
      value_type  = "STRING"
      description = local.job_labels.type
    }
  }
  label_extractors = {
    env  = "EXTRACT(labels.env)"
    type = "EXTRACT(labels.type)"
  }
}

locals {
  m = {
    dead_letters = "metric.type=\"${local.metric_prefix}/${google_logging_metric.dead_letters.name}\""
    breaker      = "metric.type=\"${local.metric_prefix}/${google_logging_metric.breaker_opened.name}\""
    started      = "metric.type=\"${local.metric_prefix}/${google_logging_metric.job_attempts["started"].name}\""
    failed       = "metric.type=\"${local.metric_prefix}/${google_logging_metric.job_attempts["failed"].name}\""
    duration     = "metric.type=\"${local.metric_prefix}/${google_logging_metric.job_duration.name}\""
    worker       = "resource.type=\"cloud_run_revision\" AND resource.label.\"service_name\"=\"jobrelay-worker\""
    queue_delay  = "metric.type=\"cloudtasks.googleapis.com/queue/task_attempt_delays\" AND resource.type=\"cloud_tasks_queue\""
    queue_depth  = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" AND resource.type=\"cloud_tasks_queue\""
    pool         = "resource.type=\"pubsub_subscription\" AND resource.label.\"subscription_id\"=\"jobrelay-muscle-pool\""
  }
}
