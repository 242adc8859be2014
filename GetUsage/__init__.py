"""GET {PoolServiceUrl}/usage?from=&to=&poolId= (account key): compute hours per pool and plan."""
import azure.functions as func

from shared import accounts, api, reports


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: reports.account_report(
        accounts.authenticate(req.route_params["accountId"], api.bearer_token(req)), req.params))
