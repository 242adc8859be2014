"""POST /api/workspaces/{workspaceId}/services/{serviceId}/jobs?api-version=2.0 (API key):
SubmitJob at the classic address of a Classic web service."""
from ..SubmitJob import main  # noqa: F401
