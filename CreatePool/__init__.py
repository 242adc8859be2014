"""POST {PoolServiceUrl}/pools (account key): create a pool of VMs billed to a New service's plan."""
import azure.functions as func

from shared import accounts, api, pools


def main(req: func.HttpRequest) -> func.HttpResponse:
    def create():
        account = accounts.authenticate(req.route_params["accountId"], api.bearer_token(req))
        return pools.create_pool(account, api.json_body(req), api.base_url())

    return api.respond(req, create)
