output "vm_service_account" {
  value = google_service_account.vm.email
}

output "instance_group" {
  value = google_compute_instance_group_manager.pool.id
}
