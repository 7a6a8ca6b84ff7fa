# Build and release, hosted in the prod project: the Artifact Registry repository holding the one
# image, the deployer account, and the Cloud Build triggers (main -> dev; tag -> stg, prod on approval).
locals {
  infra_dir    = "${path.module}/../../../infra"
  environments = yamldecode(file("${local.infra_dir}/environments.yaml"))
  prod         = local.environments.environments.prod
  project      = local.prod.project
  region       = try(local.prod.region, local.environments.defaults.region)
  repo_id      = "jobrelay"
  release_tag  = "^v[0-9]+\\.[0-9]+\\.[0-9]+$"

  triggers = {
    dev  = { description = "push to main: test, build, push, deploy to dev", branch = "^main$", tag = null, approval = false }
    stg  = { description = "release tag: deploy the tested image to stg after approval", branch = null, tag = local.release_tag, approval = true }
    prod = { description = "release tag: deploy the image stg runs to prod after approval", branch = null, tag = local.release_tag, approval = true }
  }
}

resource "google_project_service" "build" {
  for_each           = toset(["cloudbuild.googleapis.com", "artifactregistry.googleapis.com"])
  project            = local.project
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the image holds open code and no secrets (those live in Secret Manager), so a customer key adds rotation work without a threat it answers.
  project       = local.project
  location      = local.region
  repository_id = local.repo_id
  format        = "DOCKER"
  description   = "The jobrelay image; every service and the pool run it by digest."

  docker_config {
    # A commit's tag always names the image built from that commit.
    immutable_tags = true
  }

  cleanup_policies {
    id     = "drop-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.build]
}

# Each env project's Cloud Run service agent pulls the image, and so do the pool's VMs.
data "google_project" "env" {
  for_each   = local.environments.environments
  project_id = each.value.project
}

resource "google_artifact_registry_repository_iam_member" "reader" {
  for_each = merge(
    { for env, p in data.google_project.env : "run ${env}" => "serviceAccount:service-${p.number}@serverless-robot-prod.iam.gserviceaccount.com" },
    { pool = "serviceAccount:${var.pool_service_account}" },
  )
  project    = local.project
  location   = local.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = each.value
}

resource "google_service_account" "deployer" {
  project      = local.project
  account_id   = "jobrelay-deployer"
  display_name = "jobrelay Cloud Build deployer"
  description  = "Runs cloudbuild.yaml: tests, builds, pushes and applies Terraform per env."
}

resource "google_artifact_registry_repository_iam_member" "deployer_writes" {
  project    = local.project
  location   = local.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_project_iam_member" "deployer_logs" {
  project = local.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_cloudbuild_trigger" "deploy" {
  for_each        = var.repository == "" ? {} : local.triggers
  project         = local.project
  location        = local.region
  name            = "jobrelay-deploy-${each.key}"
  description     = each.value.description
  filename        = "cloudbuild.yaml"
  service_account = google_service_account.deployer.id

  repository_event_config {
    repository = var.repository
    push {
      branch = each.value.branch
      tag    = each.value.tag
    }
  }

  # Cloud Build holds the build as pending until someone with Cloud Build Approver approves it.
  approval_config {
    approval_required = each.value.approval
  }

  substitutions = {
    _ENV               = each.key
    _REGION            = local.region
    _REPOSITORY        = local.repo_id
    _SOURCE_REPOSITORY = var.repository
  }

  depends_on = [google_project_service.build]
}
