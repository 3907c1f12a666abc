"""Our client for a CRDS server (crds-events, or STScI's): the commands `crds-events sync`,
`crds-events submit --server`, `crds-events submission confirm|force|cancel --server` and
`crds-events list --server` are thin layers over these modules.

- `rpc`: `RpcClient.call(method, *params)`, the JSON-RPC 1.0 protocol of the `crds` client;
  errors as `RpcServiceError` (the server's message) or `RpcTransportError`.
- `sync`: `sync(server_url, contexts, cache_dir, ...)` keeps a CRDS-layout cache that the
  real `crds` client can use, also off-line.
- `submit`: `submit_remote`, `follow_remote`, `confirm_remote`, `force_remote`,
  `cancel_remote` against the server's token-authenticated upload endpoint.
- `status`: `remote_status` and `remote_list` for `crds-events list --server`.
"""
