# The three Cloud Run services: one image, each picks its entry point by command.
locals {
  runtime_env = {
    JOBRELAY_MODE            = "cloud"
    JOBRELAY_ENVS            = var.env
    JOBRELAY_WORKER_URL      = local.urls.worker
    JOBRELAY_WORKER_AUDIENCE = local.urls.worker
    JOBRELAY_API_URL         = local.urls.api
    JOBRELAY_DEADLETTER_URL  = local.urls.deadletter
    JOBRELAY_SECRETS_BACKEND = "secretmanager"
    JOBRELAY_LOG_LEVEL       = var.env == "dev" ? "DEBUG" : "INFO"
  }

  services = {
    api = {
      command     = ["functions-framework"]
      args        = ["--target=api", "--source=functions/main.py"]
      sa          = "api"
      timeout     = "60s"
      concurrency = 80
      min         = var.env == "prod" ? 1 : 0
      max         = 20
      memory      = "1Gi"
      # Apps call the API with Firebase ID tokens, which Cloud Run IAM cannot check: the API
      # verifies every caller itself (jobrelay.auth), so the IAM invoker check is off here only.
      public = true
    }
    worker = {
      command = ["python", "-m", "services.worker"]
      args    = []
      sa      = "worker"
      # Longest dispatch deadline in classes.yaml (30 min for class C) plus a minute, so Cloud Run
      # never cuts a job that Cloud Tasks is still waiting for.
      timeout     = "${local.longest_dispatch_seconds + 60}s"
      concurrency = 8 # jobs run in threads of one process; a few per instance
      min         = 0
      # >= the sum of the queues' max_concurrent_dispatches / concurrency (1,130 / 8; docs/capacity.md)
      max    = 150
      memory = "2Gi"
      public = false
    }
    deadletter = {
      command = ["python", "-m", "services.deadletter"]
      args    = []
      # Records dead letters in the env's Firestore: the worker's grants are exactly what it needs.
      sa          = "worker"
      timeout     = "60s"
      concurrency = 40
      min         = 0
      max         = 5
      memory      = "512Mi"
      public      = false
    }
  }

  invokers = merge(
    { "worker tasks_invoker" = { service = "worker", member = "serviceAccount:${local.sa.tasks_invoker}" } },
    { "deadletter pubsub_push" = { service = "deadletter", member = "serviceAccount:${local.sa.pubsub_push}" } },
    { "api scheduler" = { service = "api", member = "serviceAccount:${local.sa.scheduler}" } },
    { "api eventarc" = { service = "api", member = "serviceAccount:${local.sa.eventarc}" } },
    { for op in local.operators : "api ${op}" => { service = "api", member = "serviceAccount:${op}" } },
  )
}

resource "google_cloud_run_v2_service" "svc" {
  for_each            = local.services
  project             = local.project
  location            = local.region
  name                = "jobrelay-${each.key}"
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.env == "prod"
  # The worker and the dead-letter service keep the IAM check: only their one caller may invoke.
  invoker_iam_disabled = each.value.public

  template {
    service_account                  = google_service_account.sa[each.value.sa].email
    timeout                          = each.value.timeout
    max_instance_request_concurrency = each.value.concurrency

    scaling {
      min_instance_count = each.value.min
      max_instance_count = each.value.max
    }

    containers {
      image   = var.image
      command = each.value.command
      args    = each.value.args

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = each.value.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.runtime_env
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  depends_on = [google_project_service.api, google_project_iam_member.runtime]
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.invokers
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_service.svc[each.value.service].name
  role     = "roles/run.invoker"
  member   = each.value.member
}
