"""GET {PoolServiceUrl}/pools/{poolId} (account key): one pool, with its VMs."""
import azure.functions as func

from shared import accounts, api, pools


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: pools.get_pool(
        accounts.authenticate(req.route_params["accountId"], api.bearer_token(req)), req.route_params["poolId"]))
