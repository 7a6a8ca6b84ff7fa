# Job requests (docs/job-requests.md): every new job_requests/{id} in the env's Firestore reaches the
# API as Eventarc's CloudEvent (jobrelay.cloudevents), sent as the env's eventarc service account,
# whose OIDC token the API checks (jobrelay.api). The collection is jobrelay.namespace.REQUESTS and the
# path the route of jobrelay.routes: tests/infra/test_eventarc.py holds them to the code.
locals {
  job_requests = {
    collection = "job_requests"
    path       = "/v1/events/job-requests"
    # What jobrelay.cloudevents reads; Firestore's triggers send protobuf or its JSON form.
    content_type = "application/protobuf"
  }
}

resource "google_eventarc_trigger" "job_requests" {
  project = local.project
  # A Firestore trigger lives where its database does (firestore.tf: the env's region).
  location                = google_firestore_database.default.location_id
  name                    = "jobrelay-job-requests"
  service_account         = google_service_account.sa["eventarc"].email
  event_data_content_type = local.job_requests.content_type

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.firestore.document.v1.created"
  }

  matching_criteria {
    attribute = "database"
    value     = google_firestore_database.default.name
  }

  matching_criteria {
    attribute = "document"
    operator  = "match-path-pattern"
    value     = "${local.job_requests.collection}/{request}"
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.svc["api"].name
      region  = local.region
      path    = local.job_requests.path
    }
  }

  labels = { app = "jobrelay", env = var.env }

  depends_on = [
    google_project_service.api,
    google_project_iam_member.runtime,
    google_service_account_iam_member.pubsub_agent_mints_eventarc_tokens,
  ]
}

# Eventarc delivers through Pub/Sub, whose service agent mints the trigger account's OIDC tokens.
resource "google_service_account_iam_member" "pubsub_agent_mints_eventarc_tokens" {
  service_account_id = google_service_account.sa["eventarc"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
  depends_on         = [google_project_service.api]
}
