"""POST {PoolServiceUrl}/pools/{poolId}/resize (account key): change a pool's VM count."""
import azure.functions as func

from shared import accounts, api, pools


def main(req: func.HttpRequest) -> func.HttpResponse:
    def resize():
        account = accounts.authenticate(req.route_params["accountId"], api.bearer_token(req))
        return pools.resize_pool(account, req.route_params["poolId"], api.json_body(req))

    return api.respond(req, resize)
