"""DELETE .../workspaces/{workspaceId}/services/{serviceId}/jobs/{jobId}?api-version=2.0 (API key):
CancelJob at the classic address of a Classic web service."""
from ..CancelJob import main  # noqa: F401
