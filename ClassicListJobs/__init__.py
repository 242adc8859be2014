"""GET /api/workspaces/{workspaceId}/services/{serviceId}/jobs?api-version=2.0 (API key):
ListJobs at the classic address of a Classic web service."""
from ..ListJobs import main  # noqa: F401
