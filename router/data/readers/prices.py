"""Token price tables (``{model: {input: $/M tokens, output: $/M tokens}}``, YAML or JSON) and the costs
they give rows that have token counts but no cost."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.schema import LogValidationError


_EXPECTED = "a YAML or JSON file of model -> {input, output} $ per million tokens"
MAX_PRICE = 1e6  # $ per million tokens: a dollar a token; anything above is a unit mistake or an overflow


def load_prices(path: str | Path) -> dict[str, tuple[float, float]]:
    """A token-price table: ``{model: {input: $/M, output: $/M}}`` as YAML or JSON.

    LLMRouter's ``default_llm.json`` shape (``input_price``/``output_price``, full name under
    ``model``) is read too; such entries answer to both their key and their ``model`` name.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
        raw = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except FileNotFoundError:
        raise LogValidationError("no such price table", file=str(path), expected=_EXPECTED) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise LogValidationError(f"cannot be read ({type(exc).__name__}: {exc})", file=str(path),
                                 expected=_EXPECTED) from None
    if not isinstance(raw, dict) or not raw:
        raise LogValidationError("price table must be a non-empty mapping of model -> prices", file=str(path))
    prices: dict[str, tuple[float, float]] = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict):
            raise LogValidationError(f"entry for model '{key}' is not a mapping", file=str(path))
        pin = entry.get("input", entry.get("input_price"))
        pout = entry.get("output", entry.get("output_price"))
        try:
            pin, pout = float(pin), float(pout)
        except (TypeError, ValueError):
            raise LogValidationError(
                f"model '{key}' has no numeric input/output price", file=str(path),
                expected="'input' and 'output' in $ per million tokens",
            ) from None
        if not (0 <= pin <= MAX_PRICE and 0 <= pout <= MAX_PRICE):
            raise LogValidationError(f"model '{key}' has price {pin!r} / {pout!r}", file=str(path),
                                     expected=f"prices between 0 and {MAX_PRICE:,.0f} $ per million tokens")
        prices[str(key)] = (pin, pout)
        if isinstance(entry.get("model"), str):
            prices[entry["model"]] = (pin, pout)
    return prices


def apply_prices(lf: pl.LazyFrame, prices: dict[str, tuple[float, float]]) -> pl.LazyFrame:
    """Fill missing ``cost`` from token counts x price (per million tokens); known costs are kept."""
    schema = lf.collect_schema()
    if S.INPUT_TOKENS not in schema and S.OUTPUT_TOKENS not in schema:
        return lf
    table = pl.LazyFrame(
        {
            S.MODEL: list(prices),
            "_pin": [p[0] for p in prices.values()],
            "_pout": [p[1] for p in prices.values()],
        }
    )
    tokens_in = pl.col(S.INPUT_TOKENS).fill_null(0) if S.INPUT_TOKENS in schema else pl.lit(0)
    tokens_out = pl.col(S.OUTPUT_TOKENS).fill_null(0) if S.OUTPUT_TOKENS in schema else pl.lit(0)
    priced = (tokens_in * pl.col("_pin") + tokens_out * pl.col("_pout")) / 1e6
    cost = pl.coalesce(pl.col(S.COST), priced) if S.COST in schema else priced
    return lf.join(table, on=S.MODEL, how="left").with_columns(cost.alias(S.COST)).drop("_pin", "_pout")
