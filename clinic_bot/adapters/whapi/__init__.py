"""The Whapi.Cloud gateway adapter: payloads, request bodies, the HTTP client, the sandbox."""
