"""POST .../workspaces/{workspaceId}/services/{serviceId}/jobs/{jobId}/start?api-version=2.0 (API key):
StartJob at the classic address of a Classic web service."""
from ..StartJob import main  # noqa: F401
