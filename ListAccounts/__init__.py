"""GET /api/accounts (operator): every account, with its quotas and pool service URL (no keys)."""
import azure.functions as func

from shared import accounts, api


def main(req: func.HttpRequest) -> func.HttpResponse:
    return api.respond(req, lambda: accounts.list_accounts(api.base_url()), operator=True)
