# The Elastic Muscle pool: one managed instance group shared by every env, in muscle.project.
data "google_project" "env" {
  for_each   = local.environments.environments
  project_id = each.value.project
}

locals {
  infra_dir    = "${path.module}/../../../infra"
  environments = yamldecode(file("${local.infra_dir}/environments.yaml"))
  muscle       = local.environments.muscle
  project      = local.muscle.project
  zone         = local.muscle.zone
  region       = join("-", slice(split("-", local.zone), 0, 2))
  registry     = split("/", var.image)[0]

  # The pool serves every env, prod first (lower priority number first).
  envs_by_priority = [
    for p in sort([for name, e in local.environments.environments : format("%03d %s", e.priority, name)]) :
    split(" ", p)[1]
  ]
  other_projects = toset([
    for name, e in local.environments.environments : e.project if e.project != local.project
  ])

  pool_subscription = "jobrelay-muscle-pool"
  stop_seconds      = local.muscle.drain_grace_seconds + 15

  # Each env's worker (Cloud Run URLs are deterministic): where Retry(delay=) of a heavy job is handed off.
  worker_urls = {
    for name, e in local.environments.environments :
    name => "https://jobrelay-worker-${data.google_project.env[name].number}.${try(e.region, local.environments.defaults.region)}.run.app"
  }

  container_env = {
    JOBRELAY_MODE            = "cloud"
    JOBRELAY_ENVS            = join(",", local.envs_by_priority)
    JOBRELAY_SECRETS_BACKEND = "secretmanager"
    JOBRELAY_LOG_LEVEL       = "INFO"
    # Each env's clients act as that env's muscle service account; the VM's own may only impersonate them.
    JOBRELAY_IMPERSONATE = "true"
    JOBRELAY_WORKER_URLS = jsonencode(local.worker_urls)
  }

  cloud_config = <<-EOT
    #cloud-config
    write_files:
    - path: /etc/jobrelay/muscle.env
      permissions: "0644"
      owner: root
      content: |
        ${indent(4, join("\n", [for k, v in local.container_env : "${k}=${v}"]))}
    - path: /etc/systemd/system/jobrelay-muscle.service
      permissions: "0644"
      owner: root
      content: |
        [Unit]
        Description=jobrelay Elastic Muscle pool (python -m services.muscle)
        Wants=gcr-online.target docker.service
        After=gcr-online.target docker.service

        [Service]
        Environment=HOME=/home/jobrelay
        ExecStartPre=/usr/bin/mkdir -p /home/jobrelay
        ExecStartPre=/usr/bin/docker-credential-gcr configure-docker --registries=${local.registry}
        ExecStartPre=-/usr/bin/docker rm -f jobrelay-muscle
        ExecStart=/usr/bin/docker run --rm --name=jobrelay-muscle --env-file=/etc/jobrelay/muscle.env ${var.image} python -m services.muscle
        # SIGTERM, then drain_grace_seconds for running jobs to finish or be handed back.
        ExecStop=/usr/bin/docker stop --time=${local.stop_seconds} jobrelay-muscle
        TimeoutStopSec=${local.stop_seconds + 15}
        Restart=always
        RestartSec=5
    runcmd:
    - systemctl daemon-reload
    - systemctl start jobrelay-muscle.service
  EOT
}

resource "google_service_account" "vm" {
  project      = local.project
  account_id   = "jobrelay-muscle-vm"
  display_name = "jobrelay Elastic Muscle pool VMs"
  description  = "Runs the pool VMs; does nothing itself but impersonate each env's muscle account."
}

resource "google_project_iam_member" "vm" {
  for_each = toset(["roles/logging.logWriter", "roles/monitoring.metricWriter"])
  project  = local.project
  role     = each.value
  member   = "serviceAccount:${google_service_account.vm.email}"
}

# The autoscaler reads the pool subscriptions of every env: put their projects in this project's
# metrics scope so one filter sees them all.
resource "google_monitoring_monitored_project" "env" {
  for_each      = local.other_projects
  metrics_scope = "locations/global/metricsScopes/${local.project}"
  name          = "locations/global/metricsScopes/${local.project}/projects/${each.value}"
}

resource "google_compute_instance_template" "pool" {
  project      = local.project
  region       = local.region
  name_prefix  = "jobrelay-muscle-"
  machine_type = local.muscle.machine_type
  tags         = ["jobrelay-muscle"]
  labels       = { app = "jobrelay", role = "muscle" }

  disk {
    source_image = "projects/cos-cloud/global/images/family/cos-stable"
    boot         = true
    auto_delete  = true
    disk_type    = "pd-balanced"
    disk_size_gb = 50
  }

  # No external address: Google APIs through Private Google Access, the rest through Cloud NAT.
  network_interface {
    subnetwork = google_compute_subnetwork.pool.id
  }

  service_account {
    email  = google_service_account.vm.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  scheduling {
    automatic_restart   = true
    on_host_maintenance = "MIGRATE"
  }

  metadata = {
    user-data              = local.cloud_config
    google-logging-enabled = "true"
    block-project-ssh-keys = "true"
    enable-oslogin         = "TRUE"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_instance_group_manager" "pool" {
  project            = local.project
  zone               = local.zone
  name               = "jobrelay-muscle"
  base_instance_name = "jobrelay-muscle"

  version {
    name              = "primary"
    instance_template = google_compute_instance_template.pool.id
  }

  # A new image rolls out one VM at a time; the old one drains first (SIGTERM + drain grace).
  update_policy {
    type                  = "PROACTIVE"
    minimal_action        = "REPLACE"
    max_surge_fixed       = 1
    max_unavailable_fixed = 0
  }
}

resource "google_compute_autoscaler" "pool" {
  project = local.project
  zone    = local.zone
  name    = "jobrelay-muscle"
  target  = google_compute_instance_group_manager.pool.id

  autoscaling_policy {
    min_replicas    = local.muscle.min_replicas
    max_replicas    = local.muscle.max_replicas
    cooldown_period = 120
    mode            = "ON"

    # Per-group metric: the filter matches the pool subscription of every env in the metrics scope and
    # the autoscaler sums the matching series, so the pool holds one VM per backlog_per_vm messages
    # waiting across all envs (see docs/adr/0011-muscle-pool-scaling.md).
    metric {
      name                       = "pubsub.googleapis.com/subscription/num_undelivered_messages"
      filter                     = "resource.type = pubsub_subscription AND resource.labels.subscription_id = \"${local.pool_subscription}\""
      single_instance_assignment = local.muscle.backlog_per_vm
    }

    # Scale in slowly: a VM going away hands its running jobs back.
    scale_in_control {
      time_window_sec = 600
      max_scaled_in_replicas {
        fixed = 1
      }
    }
  }
}
