terraform {
  required_version = ">= 1.6"
  required_providers {
    # Pinned exactly: tests/infra checks every argument against this version's schema.
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
  }
}
