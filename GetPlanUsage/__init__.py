"""GET /api/billingplans/{billingPlanId}/usage?from=&to= (operator): a plan's usage across accounts."""
import azure.functions as func

from shared import api, reports


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: reports.plan_report(req.route_params["billingPlanId"], req.params), operator=True)
