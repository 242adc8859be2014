"""The Batch Pool function app's own package: domain operations and the plumbing they share."""
from shared import logfields

# Every record of the app names the job, pool and VM it is about (see `shared.logfields`).
logfields.install()
