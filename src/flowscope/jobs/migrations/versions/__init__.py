"""The job store's schema revisions, oldest first."""
