# Topics and subscriptions the code expects (jobrelay.settings.Environment, jobrelay/local/provision.py).
resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; messages carry only env, job id and attributes (payloads stay in Firestore), so a per-env KMS key would add key management without protecting anything sensitive.
  for_each                   = local.topics
  project                    = local.project
  name                       = each.value
  message_retention_duration = local.message_retention
  depends_on                 = [google_project_service.api]
}

# Dead jobs the worker gave up on -> the dead-letter service, authenticated as pubsub_push.
resource "google_pubsub_subscription" "dead_letters_push" {
  project                    = local.project
  name                       = "jobrelay-dead-letters-push"
  topic                      = google_pubsub_topic.topic["dead_letters"].id
  ack_deadline_seconds       = local.dead_letter_push_ack
  message_retention_duration = local.message_retention

  push_config {
    push_endpoint = "${local.urls.deadletter}/v1/push"
    oidc_token {
      service_account_email = google_service_account.sa["pubsub_push"].email
      audience              = local.urls.deadletter
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = "" # never expire for lack of traffic
  }
}

# The Elastic Muscle pool pulls heavy jobs from here; Pub/Sub's own dead-letter policy catches poison.
resource "google_pubsub_subscription" "pool" {
  project                    = local.project
  name                       = local.pool_subscription
  topic                      = google_pubsub_topic.topic["muscle"].id
  ack_deadline_seconds       = local.pool_ack_deadline
  message_retention_duration = local.message_retention

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.topic["muscle_dead_letters"].id
    max_delivery_attempts = local.pool_max_delivery
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }
}

# Poison messages of the pool -> the dead-letter service's pool route.
resource "google_pubsub_subscription" "muscle_dead_letters_push" {
  project                    = local.project
  name                       = "jobrelay-muscle-dead-letters-push"
  topic                      = google_pubsub_topic.topic["muscle_dead_letters"].id
  ack_deadline_seconds       = local.dead_letter_push_ack
  message_retention_duration = local.message_retention

  push_config {
    push_endpoint = "${local.urls.deadletter}/v1/push/pool"
    oidc_token {
      service_account_email = google_service_account.sa["pubsub_push"].email
      audience              = local.urls.deadletter
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }
}

locals {
  topic_publishers = {
    "api muscle"                = { topic = "muscle", member = "serviceAccount:${local.sa.api}" }
    "worker muscle"             = { topic = "muscle", member = "serviceAccount:${local.sa.worker}" }
    "worker dead_letters"       = { topic = "dead_letters", member = "serviceAccount:${local.sa.worker}" }
    "muscle muscle"             = { topic = "muscle", member = "serviceAccount:${local.sa.muscle}" }
    "muscle dead_letters"       = { topic = "dead_letters", member = "serviceAccount:${local.sa.muscle}" }
    "agent muscle_dead_letters" = { topic = "muscle_dead_letters", member = local.pubsub_agent }
  }
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each   = local.topic_publishers
  project    = local.project
  topic      = google_pubsub_topic.topic[each.value.topic].name
  role       = "roles/pubsub.publisher"
  member     = each.value.member
  depends_on = [google_service_account.sa]
}

# Dead-lettering needs the Pub/Sub service agent to read the source subscription; the pool's
# account (impersonated by the VMs) is the only other subscriber.
resource "google_pubsub_subscription_iam_member" "pool_subscriber" {
  for_each = {
    muscle = "serviceAccount:${google_service_account.sa["muscle"].email}"
    agent  = local.pubsub_agent
  }
  project      = local.project
  subscription = google_pubsub_subscription.pool.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}
