"""POST .../services/{serviceId}/jobs?api-version=2.0 (API key): submit a job; answers its id."""
import azure.functions as func

from shared import api, jobs


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: jobs.submit_job(jobs.authorize(req.route_params, req.params, api.bearer_token(req)),
                                               api.json_body(req)))
