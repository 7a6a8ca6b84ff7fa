terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
  }

  # Backend blocks cannot read files: the bucket is <project>-jobrelay-tfstate for this env's
  # project in infra/environments.yaml (tests/infra checks the two agree).
  backend "gcs" {
    bucket = "singular-dream-jobrelay-tfstate"
    prefix = "jobrelay"
  }
}
