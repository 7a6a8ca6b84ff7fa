locals {
  apis = [
    "run.googleapis.com",
    "cloudtasks.googleapis.com",
    "pubsub.googleapis.com",
    "firestore.googleapis.com",
    "firebaserules.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "secretmanager.googleapis.com",
    "monitoring.googleapis.com",
    "logging.googleapis.com",
    "artifactregistry.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "compute.googleapis.com",
  ]
}

resource "google_project_service" "api" {
  for_each = toset(local.apis)
  project  = local.project
  service  = each.value
  # Turning an API off from Terraform would take the env's data path down with it.
  disable_on_destroy = false
}
