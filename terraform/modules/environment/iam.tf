# Service accounts of the env (names from environments.yaml) and the least each one needs.
resource "google_service_account" "sa" {
  for_each     = local.sa
  project      = local.project
  account_id   = split("@", each.value)[0]
  display_name = "jobrelay ${each.key} (${var.env})"

  lifecycle {
    precondition {
      condition     = endswith(each.value, "@${local.project}.iam.gserviceaccount.com")
      error_message = "service account ${each.key} (${each.value}) must live in the env's own project ${local.project}."
    }
  }
}

locals {
  # Project-level roles. Firestore has no finer grant than the project; Cloud Tasks roles are per
  # project too (queues are the env's only ones). secretmanager.viewer lets the secretmanager backend
  # list the secrets labelled jobrelay=true (secretAccessor alone cannot list, only read a version).
  project_roles = {
    api = [
      "roles/datastore.user",
      "roles/cloudtasks.enqueuer",
      "roles/cloudtasks.taskDeleter", # cancel deletes the job's waiting task
      "roles/firebaseauth.admin",     # `jobrelay access grant|revoke`: custom claims of the env's users (ADR 0014)
      "roles/cloudtasks.viewer",
    ]
    worker = [
      "roles/datastore.user",
      "roles/cloudtasks.enqueuer",
      "roles/cloudtasks.viewer", # maintenance checks whether a job's task still exists
      "roles/secretmanager.secretAccessor",
      "roles/secretmanager.viewer",
      "roles/firebaseauth.viewer", # the maintenance pass's sweep reads job requests' owners (jobrelay.intake)
    ]
    # The Eventarc trigger's identity (eventarc.tf): it receives the env's Firestore events, nothing more.
    eventarc = [
      "roles/eventarc.eventReceiver",
    ]
    muscle = [
      "roles/datastore.user",
      "roles/cloudtasks.enqueuer", # Retry(delay=) on the pool re-dispatches through a delayed task
      "roles/secretmanager.secretAccessor",
      "roles/secretmanager.viewer",
    ]
  }
  project_grants = merge([
    for who, roles in local.project_roles : { for r in roles : "${who} ${r}" => { who = who, role = r } }
  ]...)

  # Who may create tasks whose OIDC token is minted for tasks_invoker (Cloud Tasks checks actAs).
  task_creators = ["api", "worker", "muscle"]
}

resource "google_project_iam_member" "runtime" {
  for_each = local.project_grants
  project  = local.project
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.sa[each.value.who].email}"
}

resource "google_service_account_iam_member" "act_as_tasks_invoker" {
  for_each           = toset(local.task_creators)
  service_account_id = google_service_account.sa["tasks_invoker"].name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.sa[each.value].email}"
}

# Pub/Sub mints the push subscriptions' OIDC tokens as pubsub_push through its service agent.
resource "google_service_account_iam_member" "pubsub_agent_mints_push_tokens" {
  service_account_id = google_service_account.sa["pubsub_push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
  depends_on         = [google_project_service.api]
}

# The Elastic Muscle pool's VMs act as this env's muscle account, and only through impersonation.
resource "google_service_account_iam_member" "pool_impersonates_muscle" {
  service_account_id = google_service_account.sa["muscle"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pool_vm_sa}"
}
