"""GET /api/subscriptions/{subscriptionId}/services/{serviceId} (operator): a registered web service (no key)."""
import azure.functions as func

from shared import api, services


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: services.show_service(
        req.route_params["subscriptionId"], req.route_params["serviceId"], api.base_url()), operator=True)
