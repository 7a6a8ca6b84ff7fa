resource "google_compute_network" "pool" {
  project                 = local.project
  name                    = "jobrelay-muscle"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "pool" {
  project                  = local.project
  region                   = local.region
  name                     = "jobrelay-muscle"
  network                  = google_compute_network.pool.id
  ip_cidr_range            = "10.60.0.0/24"
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Heavy jobs (test suites, builds) fetch packages: outbound only, through NAT.
resource "google_compute_router" "pool" {
  project = local.project
  region  = local.region
  name    = "jobrelay-muscle"
  network = google_compute_network.pool.id
}

resource "google_compute_router_nat" "pool" {
  project                            = local.project
  region                             = local.region
  name                               = "jobrelay-muscle"
  router                             = google_compute_router.pool.name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# The pool serves nothing: every inbound connection is refused, and the refusals are logged.
resource "google_compute_firewall" "deny_ingress" {
  project       = local.project
  name          = "jobrelay-muscle-deny-ingress"
  network       = google_compute_network.pool.id
  direction     = "INGRESS"
  priority      = 1000
  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}
