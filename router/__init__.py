"""learned-router: train, evaluate and export learned LLM routers."""


def load(uri, *, threads=None):
    """Load an exported router in one line: ``router.load("models:/<name>@champion")`` or a folder.

    Returns a ``RouterService`` with ``route(prompts, lam=, budget=, share=, margin=, tasks=)`` and ``scores(prompts)``.
    ``threads``: CPU threads one embedding may use (default: every core; see ``router.serve.load.load``).
    """
    from router.serve.load import load as _load

    return _load(uri, threads=threads)
