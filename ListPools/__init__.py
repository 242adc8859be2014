"""GET {PoolServiceUrl}/pools (account key): the account's pools."""
import azure.functions as func

from shared import accounts, api, pools


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: pools.list_pools(
        accounts.authenticate(req.route_params["accountId"], api.bearer_token(req))))
