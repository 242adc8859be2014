"""A local host for folder-per-function Azure Functions Python apps (v1 model).

It reads host.json and every <Function>/function.json and serves HTTP, queue and timer
triggers against an Azure Storage account (Azurite locally), reproducing the documented
behaviour of the Functions host closely enough that the same folders run unchanged under
`func start` and in Azure. It knows nothing about the app it hosts.
"""
