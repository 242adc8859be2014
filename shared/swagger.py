"""The Swagger 2.0 document each web service publishes for its BES 2.0 job API."""
from __future__ import annotations

from urllib.parse import urlsplit

from shared import schema

_LOCATION = {
    "type": "object",
    "required": ["ConnectionString", "RelativeLocation"],
    "properties": {
        "ConnectionString": {"type": "string"},
        "BaseLocation": {"type": "string"},
        "RelativeLocation": {"type": "string", "description": "container/path of the blob"},
        "SasBlobToken": {"type": "string"},
    },
}


def _operation(summary: str, operation_id: str, parameters: list, responses: dict) -> dict:
    return {"summary": summary, "operationId": operation_id, "produces": ["application/json"],
            "parameters": [{"name": "api-version", "in": "query", "required": True, "type": "string",
                            "enum": ["2.0"]}, *parameters],
            "responses": responses}


def bes_swagger(service, service_url: str, input_columns: dict[str, str] | None = None) -> dict:
    """`input_columns`: what the scorer declares it reads (`shared.schema`), published as
    `InputRow`, one row of the input CSV."""
    parts = urlsplit(service_url)
    job_id = {"name": "jobId", "in": "path", "required": True, "type": "string"}
    status = {"200": {"description": "the job", "schema": {"$ref": "#/definitions/JobStatus"}}}
    return {
        "swagger": "2.0",
        "info": {
            "title": service.name,
            "version": "2.0",
            "description": f"Batch Execution Service API of web service {service.service_id}",
            "x-ms-kind": service.kind,
            "x-ms-billing-plan-id": service.billing_plan_id,
        },
        "host": parts.netloc,
        "schemes": [parts.scheme],
        "basePath": parts.path,
        "securityDefinitions": {"ApiKey": {"type": "apiKey", "name": "Authorization", "in": "header",
                                           "description": "Bearer <API key>"}},
        "security": [{"ApiKey": []}],
        "paths": {
            "/jobs": {
                "post": _operation("Submit a job", "SubmitJob",
                                   [{"name": "body", "in": "body", "required": True,
                                     "schema": {"$ref": "#/definitions/BatchJobRequest"}}],
                                   {"200": {"description": "the job id", "schema": {"type": "string"}}}),
                "get": _operation("List the service's jobs, newest first", "ListJobs", [],
                                  {"200": {"description": "jobs", "schema": {"type": "array", "items": {
                                      "$ref": "#/definitions/JobStatus"}}}}),
            },
            "/jobs/{jobId}/start": {
                "post": _operation("Start a submitted job", "StartJob", [job_id], {"200": {"description": "started"}}),
            },
            "/jobs/{jobId}": {
                "get": _operation("Get a job's status", "GetJob", [job_id], status),
                "delete": _operation("Cancel a job", "CancelJob", [job_id], {"200": {"description": "cancelled"}}),
            },
        },
        "definitions": {
            "BlobLocation": _LOCATION,
            "InputRow": schema.swagger_definition(input_columns),
            "BatchJobRequest": {
                "type": "object",
                "properties": {
                    "Input": {"$ref": "#/definitions/BlobLocation"},
                    "Inputs": {"type": "object", "additionalProperties": {"$ref": "#/definitions/BlobLocation"}},
                    "Outputs": {"type": "object", "additionalProperties": {"$ref": "#/definitions/BlobLocation"}},
                    "GlobalParameters": {"type": "object", "additionalProperties": {"type": "string"}},
                    "AzureBatchPoolId": {"type": "string"},
                },
            },
            "JobStatus": {
                "type": "object",
                "properties": {
                    "StatusCode": {"type": "string",
                                   "enum": ["NotStarted", "Running", "Failed", "Cancelled", "Finished"]},
                    "Results": {"type": "object"},
                    "Details": {"type": "string"},
                    "CreatedAt": {"type": "string", "format": "date-time"},
                    "StartTime": {"type": "string", "format": "date-time"},
                    "EndTime": {"type": "string", "format": "date-time"},
                    "AzureBatchPoolId": {"type": "string"},
                    "QueuePosition": {"type": "integer"},
                },
            },
        },
    }
