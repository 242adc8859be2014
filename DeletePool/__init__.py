"""DELETE {PoolServiceUrl}/pools/{poolId} (account key): delete a pool; its billing stops."""
import azure.functions as func

from shared import accounts, api, pools


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: pools.delete_pool(
        accounts.authenticate(req.route_params["accountId"], api.bearer_token(req)), req.route_params["poolId"]))
