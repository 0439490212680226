"""MLflow pyfunc model-from-code: the exported router. Logged by ``pipelines.export``.

``load_context`` loads the embedder (weights inside the model's artifacts) and the fitted head
once; ``predict`` only serves. Input: a DataFrame with a ``prompt`` column and an optional
``task`` column (each prompt's task tag, when known; a task head routes by it), or a list of
strings. Params: ``lam`` (cost weight), ``budget`` ($/query; > 0 picks lam from the held-out
cost curve), ``share_model`` + ``share`` (send that fraction of calls to that model),
``return_scores`` (add one predicted-score column per model).
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
        budget = params.get("budget")
        budget = float(budget) if budget is not None and float(budget) > 0 else None
        lam = params.get("lam")
        lam = None if lam is None or budget is not None else float(lam)
        share = {params["share_model"]: float(params.get("share", 0.0))} if params.get("share_model") else None
        if share is not None:
            lam = budget = None
        elif budget is None and lam == self.service.meta.default_lam:
            lam = None  # the signature's default: the exported operating point (a trained share included)
        scores = self.service.scores(prompts, tasks)
        choice = self.service.choose(scores, *self.service.operating_point(lam, budget, share))
        out = pd.DataFrame({"model": [self.service.models[i] for i in choice]})
        if params.get("return_scores"):
            for j, name in enumerate(self.service.models):
                out[name] = scores[:, j]
        return out


mlflow.models.set_model(RouterPyfunc())
