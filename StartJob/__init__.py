"""POST .../jobs/{jobId}/start?api-version=2.0 (API key): run the job now or queue it."""
import azure.functions as func

from shared import api, jobs


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: jobs.start_job(jobs.authorize(req.route_params, req.params, api.bearer_token(req)),
                                              req.route_params["jobId"]))
