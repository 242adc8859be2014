"""PUT /api/subscriptions/{subscriptionId}/services/{serviceId} (operator): register a web service."""
import azure.functions as func

from shared import api, services


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: services.put_service(
        req.route_params["subscriptionId"], req.route_params["serviceId"], api.json_body(req), api.base_url()),
        operator=True)
