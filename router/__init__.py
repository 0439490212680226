"""learned-router: train, evaluate and export learned LLM routers."""


def load(uri):
    """Load an exported router in one line: ``router.load("models:/<name>@champion")``.

    Returns a ``RouterService`` with ``route(prompts, lam=None, budget=None)`` and ``scores(prompts)``.
    """
    from router.serve.load import load as _load

    return _load(uri)
