"""GET /api/billingplans?from=&to= (operator): every billing plan's usage across accounts."""
import azure.functions as func

from shared import api, reports


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: reports.plans_report(req.params), operator=True)
