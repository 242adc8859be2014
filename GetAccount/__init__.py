"""GET /api/accounts/{accountId} (operator): an account's quotas and pool service URL."""
import azure.functions as func

from shared import accounts, api


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: accounts.get_account(req.route_params["accountId"], api.base_url()), operator=True)
