"""GET .../services/{serviceId}/jobs?api-version=2.0 (API key): the service's jobs, newest first."""
import azure.functions as func

from shared import api, jobs


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: jobs.list_jobs(jobs.authorize(req.route_params, req.params, api.bearer_token(req)),
                                              req.params))
