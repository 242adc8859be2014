"""GET /api/subscriptions/{subscriptionId}/services/{serviceId}/swagger.json (API key)."""
import azure.functions as func

from shared import api, services


def main(req: func.HttpRequest) -> func.HttpResponse:
    def describe():
        service = services.authenticate(req.route_params["subscriptionId"], req.route_params["serviceId"],
                                        api.bearer_token(req))
        return services.swagger(service, api.base_url())

    return api.respond(req, describe)
