"""PUT /api/accounts/{accountId} (operator): create an account or change its quotas."""
import azure.functions as func

from shared import accounts, api


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: accounts.put_account(
        req.route_params["accountId"], api.json_body(req), api.base_url()), operator=True)
