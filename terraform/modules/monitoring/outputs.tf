output "log_metrics" {
  value = concat([google_logging_metric.dead_letters.name, google_logging_metric.job_duration.name],
  [for m in google_logging_metric.job_attempts : m.name])
}
