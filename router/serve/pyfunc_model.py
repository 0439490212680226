"""MLflow pyfunc model-from-code: the exported router. Logged by ``pipelines.publish.export``.

``load_context`` loads the embedder (weights inside the model's artifacts) and the fitted head
once; ``predict`` only serves. Input: a DataFrame with a ``prompt`` column and an optional
``task`` column (each prompt's task tag, when known; a task head routes by it), or a list of
strings. Params: ``lam`` (cost weight), ``budget`` ($/query; > 0), ``margin`` (>= 0: the cheapest routing
within that fraction of the best single model's quality), ``share_model`` + ``share`` (send that fraction
of calls to that model), ``return_scores`` (add one predicted-score column per model). They are resolved
as every other call is (``RouterService.operating_point``).
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from router.serve.service import RouterService


class RouterPyfunc(PythonModel):
    def load_context(self, context) -> None:
        self.service = RouterService.from_dir(context.artifacts["head"], context.artifacts["embedder"])

    # The pd.DataFrame hint is one MLflow takes as "validate by the logged signature, not the hint":
    # no hint made MLflow 3 print an "Add type hints" warning on every log and load, which its own
    # warnings filter ("once" per call) lets through any filter of ours. Lists and dicts still work.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        params = params or {}
        if isinstance(model_input, pd.DataFrame):
            if "prompt" not in model_input.columns:
                raise ValueError(f"input needs a 'prompt' column; got columns {list(model_input.columns)}")
            prompts = model_input["prompt"].tolist()
            tasks = model_input["task"].tolist() if "task" in model_input.columns else None
        elif isinstance(model_input, dict):
            prompts = list(model_input["prompt"])
            tasks = list(model_input["task"]) if "task" in model_input else None
        else:
            prompts, tasks = list(model_input), None
        if tasks is not None:  # a missing tag (NaN in a DataFrame) means: infer the task
            tasks = [t if isinstance(t, str) else None for t in tasks]
        scores = self.service.scores(prompts, tasks)
        choice = self.service.choose(scores, self.service.operating_point(**call_setting(params, self.service)))
        out = pd.DataFrame({"model": [self.service.models[i] for i in choice]})
        if params.get("return_scores"):
            for j, name in enumerate(self.service.models):
                out[name] = scores[:, j]
        return out


def call_setting(params: dict, service: RouterService) -> dict:
    """The call's ``lam`` / ``budget`` / ``share`` from the pyfunc params, for ``RouterService.operating_point``.

    A signature holds every param with a default (``budget`` 0, ``margin`` -1, ``share_model`` "", ``lam`` the
    exported default), so a default value means "not given": the router's own operating point then applies.
    """
    if params.get("share_model"):
        return {"share": {params["share_model"]: float(params.get("share", 0.0))}}
    budget = params.get("budget")
    if budget is not None and float(budget) > 0:
        return {"budget": float(budget)}
    margin = params.get("margin")
    if margin is not None and float(margin) >= 0:
        return {"margin": float(margin)}
    lam = params.get("lam")
    return {} if lam is None or float(lam) == service.meta.default_lam else {"lam": float(lam)}


mlflow.models.set_model(RouterPyfunc())
