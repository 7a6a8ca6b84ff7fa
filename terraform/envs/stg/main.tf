# The stg env: everything else comes from infra/*.yaml, which the code reads too.
locals {
  env      = "stg"
  settings = yamldecode(file("${path.module}/../../../infra/environments.yaml"))
  project  = local.settings.environments[local.env].project
  region   = try(local.settings.environments[local.env].region, local.settings.defaults.region)
}

provider "google" {
  project = local.project
  region  = local.region
}

module "environment" {
  source = "../../modules/environment"
  env    = local.env
  image  = var.image
}

module "monitoring" {
  source     = "../../modules/monitoring"
  env        = local.env
  depends_on = [module.environment]
}
