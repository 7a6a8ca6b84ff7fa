# Everything this module knows about the env comes from the same infra/ files the code reads.
locals {
  infra_dir    = "${path.module}/../../../infra"
  environments = yamldecode(file("${local.infra_dir}/environments.yaml"))
  classes      = yamldecode(file("${local.infra_dir}/classes.yaml")).classes
  schedules    = try(yamldecode(file("${local.infra_dir}/schedules.yaml")).schedules, {})
  firestore    = jsondecode(file("${local.infra_dir}/firestore.indexes.json"))

  defaults = local.environments.defaults
  settings = local.environments.environments[var.env]
  project  = local.settings.project
  region   = try(local.settings.region, local.defaults.region)

  # Service account emails: the `{project}` templates of environments.yaml, as jobrelay.settings does.
  sa = {
    for role, template in merge(local.defaults.service_accounts, try(local.settings.service_accounts, {})) :
    role => replace(template, "{project}", local.project)
  }
  operators = try(local.settings.access.operators, [])

  # The pool's own VM service account lives in the muscle host project (modules/muscle creates it).
  pool_vm_sa = "jobrelay-muscle-vm@${local.environments.muscle.project}.iam.gserviceaccount.com"

  # Cloud Run URLs are deterministic (https://SERVICE-PROJECT_NUMBER.REGION.run.app): knowing them
  # up front lets the API carry its own URL and the worker's without a dependency cycle.
  number = data.google_project.this.number
  urls = {
    for s in ["api", "worker", "deadletter"] : s => "https://jobrelay-${s}-${local.number}.${local.region}.run.app"
  }
  pubsub_agent = "serviceAccount:service-${local.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Pub/Sub names; the code's jobrelay.settings.Environment properties and local/provision.py use the same.
  topics = {
    dead_letters        = "jobrelay-dead-letters"
    muscle              = "jobrelay-muscle"
    muscle_dead_letters = "jobrelay-muscle-dead-letters"
  }
  pool_subscription        = "jobrelay-muscle-pool"
  pool_ack_deadline        = 60
  pool_max_delivery        = 5
  dead_letter_push_ack     = 30
  message_retention        = "604800s" # 7 days
  env_names                = keys(local.environments.environments)
  longest_dispatch_seconds = max([for c in values(local.classes) : c.dispatch_deadline_seconds]...)
}

data "google_project" "this" {
  project_id = local.project
}
