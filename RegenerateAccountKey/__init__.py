"""POST /api/accounts/{accountId}/keys/{keyName}/regenerate (operator): replace a key."""
import azure.functions as func

from shared import accounts, api


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: accounts.regenerate_key(
        req.route_params["accountId"], req.route_params["keyName"]), operator=True)
