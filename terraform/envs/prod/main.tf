# The prod env: everything else comes from infra/*.yaml, which the code reads too.
locals {
  env      = "prod"
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

# The pool and the build pipeline live in the prod project (muscle.project is prod's), so the prod
# root owns them: the pool serves every env, and the release triggers promote into stg and prod.
module "muscle" {
  source     = "../../modules/muscle"
  image      = var.image
  depends_on = [module.environment]
}

module "pipeline" {
  source               = "../../modules/pipeline"
  repository           = var.source_repository
  pool_service_account = module.muscle.vm_service_account
}
