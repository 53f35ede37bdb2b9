"""Clawdet's control plane: the domain logic the web app, the stream server, the workers and the
CLI share.

The application map (who stands on whom: webapp and streams, side by side -> clawdet -> db;
sandbox and db at the ground):

    clawdet.settings      every configuration variable, declared once; sandbox mode decided here
    clawdet.errors        the one error a person may see: status, code, message, what to do next
    clawdet.bodies        the one shape check of a JSON request body
    clawdet.logs          JSON logs with request ids; secrets masked at the logger
    clawdet.cloud         which cloud the instances live in, and small Hetzner/Cloudflare clients
    clawdet.accounts      sign-up, sign-in, passwords, X OAuth client, free beta, users.json import
    clawdet.instances     the desired instance: requests, credentials, key rotation, the work queue
                          (leases), progress events and the lifecycle, the one module that
                          changes instance state
    clawdet.reconciler    the engine side: stacks (the only importer of pulumi.automation), the
                          reconciler, the fleet scan, gateway health probes, the worker process
    clawdet.llm           the LLM proxy's domain: admission (keys, quota reservations, open
                          requests), upstreams, metering, pricing, usage, the recorder
    clawdet.mail          the durable outbox, its sender, the emails the database says are due
    clawdet.ops           metrics, platform health, costs, observed operations, platform backups
    clawdet.cli           the `clawdet` command, one module per command group
"""
