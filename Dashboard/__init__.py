"""GET /api/dashboard/ (anonymous): the dashboard page and its script and style sheet.

Only the files named in `shared.dashboard.FILES` are served, from this folder's `static/`;
the page calls the API from the browser with the key its user typed, so no key ever
reaches this function."""
import azure.functions as func

from shared import dashboard


def main(req: func.HttpRequest) -> func.HttpResponse:
    return dashboard.serve(req)
