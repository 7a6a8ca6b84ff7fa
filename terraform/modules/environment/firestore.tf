# Firestore (native) with the rules, composite indexes and field overrides of infra/.
resource "google_firestore_database" "default" {
  project                           = local.project
  name                              = "(default)"
  location_id                       = local.region
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # Never drop an env's jobs because a Terraform plan said so.
  deletion_policy = "ABANDON"
  depends_on      = [google_project_service.api]
}

resource "google_firebaserules_ruleset" "firestore" {
  project = local.project

  source {
    files {
      name    = "firestore.rules"
      content = file("${local.infra_dir}/firestore.rules")
    }
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_firestore_database.default]
}

resource "google_firebaserules_release" "firestore" {
  project      = local.project
  name         = "cloud.firestore"
  ruleset_name = "projects/${local.project}/rulesets/${google_firebaserules_ruleset.firestore.name}"
}

resource "google_firestore_index" "composite" {
  for_each = {
    for ix in local.firestore.indexes :
    join(" ", concat([ix.collectionGroup, ix.queryScope], [for f in ix.fields : "${f.fieldPath}:${try(f.order, f.arrayConfig)}"])) => ix
  }
  project     = local.project
  database    = google_firestore_database.default.name
  collection  = each.value.collectionGroup
  query_scope = each.value.queryScope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = try(fields.value.order, null)
      array_config = try(fields.value.arrayConfig, null)
    }
  }
}

# fieldOverrides: the TTL policy on jobs.expire_at, and fields kept out of single-field indexes.
resource "google_firestore_field" "override" {
  for_each   = { for f in local.firestore.fieldOverrides : "${f.collectionGroup}.${f.fieldPath}" => f }
  project    = local.project
  database   = google_firestore_database.default.name
  collection = each.value.collectionGroup
  field      = each.value.fieldPath

  dynamic "ttl_config" {
    for_each = try(each.value.ttl, false) ? [true] : []
    content {}
  }

  index_config {
    dynamic "indexes" {
      for_each = try(each.value.indexes, [])
      content {
        order        = try(indexes.value.order, null)
        array_config = try(indexes.value.arrayConfig, null)
        query_scope  = try(indexes.value.queryScope, "COLLECTION")
      }
    }
  }
}
