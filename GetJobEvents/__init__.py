"""GET .../jobs/{jobId}/events?api-version=2.0 (API key): the job's push events and how their
delivery went."""
import azure.functions as func

from shared import api, jobs


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: jobs.job_events(jobs.authorize(req.route_params, req.params,
                                                                   api.bearer_token(req)),
                                                    req.route_params["jobId"]))
