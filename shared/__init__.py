"""The Batch Pool function app's own package: domain operations and the plumbing they share."""
