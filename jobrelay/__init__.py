"""jobrelay: batch jobs for Firebase apps on Google Cloud."""
