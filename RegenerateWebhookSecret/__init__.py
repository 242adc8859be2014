"""POST /api/subscriptions/{subscriptionId}/services/{serviceId}/webhooksecret/regenerate
(operator): a new secret for the service's push events, shown once."""
import azure.functions as func

from shared import api, services


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: services.regenerate_webhook_secret(
        req.route_params["subscriptionId"], req.route_params["serviceId"]), operator=True)
