locals {
  # title => one or more [filter, aligner, reducer, group_by]; drawn as lines.
  tiles = [
    { title = "Dead letters recorded (by type)", sets = [[local.m.dead_letters, "ALIGN_SUM", "REDUCE_SUM", ["metric.label.type"]]] },
    { title = "Job attempts: started and failed", sets = [
      [local.m.started, "ALIGN_SUM", "REDUCE_SUM", []],
      [local.m.failed, "ALIGN_SUM", "REDUCE_SUM", []],
    ] },
    { title = "Cloud Tasks queue depth", sets = [[local.m.queue_depth, "ALIGN_MAX", "REDUCE_SUM", ["resource.label.queue_id"]]] },
    { title = "Cloud Tasks attempt delay p95 (ms)", sets = [[local.m.queue_delay, "ALIGN_DELTA", "REDUCE_PERCENTILE_95", ["resource.label.queue_id"]]] },
    { title = "Worker request latency p95 (ms)", sets = [["metric.type=\"run.googleapis.com/request_latencies\" AND ${local.m.worker}", "ALIGN_DELTA", "REDUCE_PERCENTILE_95", []]] },
    { title = "Cloud Run instances", sets = [["metric.type=\"run.googleapis.com/container/instance_count\" AND resource.type=\"cloud_run_revision\"", "ALIGN_MAX", "REDUCE_SUM", ["resource.label.service_name"]]] },
    { title = "Pool backlog (undelivered messages)", sets = [["metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND ${local.m.pool}", "ALIGN_MAX", "REDUCE_SUM", []]] },
    { title = "Pool oldest unacked message (s)", sets = [["metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.m.pool}", "ALIGN_MAX", "REDUCE_MAX", []]] },
    { title = "Job duration p95 (s, log metric)", sets = [[local.m.duration, "ALIGN_DELTA", "REDUCE_PERCENTILE_95", ["metric.label.type"]]] },
  ]

  dashboard = {
    displayName = "jobrelay ${var.env}"
    mosaicLayout = {
      columns = 48
      tiles = [
        for i, t in local.tiles : {
          xPos   = (i % 2) * 24
          yPos   = floor(i / 2) * 16
          width  = 24
          height = 16
          widget = {
            title = t.title
            xyChart = {
              dataSets = [
                for s in t.sets : {
                  plotType = "LINE"
                  timeSeriesQuery = {
                    timeSeriesFilter = {
                      filter = s[0]
                      aggregation = {
                        alignmentPeriod    = "60s"
                        perSeriesAligner   = s[1]
                        crossSeriesReducer = s[2]
                        groupByFields      = s[3]
                      }
                    }
                  }
                }
              ]
            }
          }
        }
      ]
    }
  }
}

resource "google_monitoring_dashboard" "jobrelay" {
  project        = local.project
  dashboard_json = jsonencode(local.dashboard)
}
