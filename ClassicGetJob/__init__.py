"""GET .../workspaces/{workspaceId}/services/{serviceId}/jobs/{jobId}?api-version=2.0 (API key):
GetJob at the classic address of a Classic web service."""
from ..GetJob import main  # noqa: F401
