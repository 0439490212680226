"""The upstream map of ``router serve``: where each routable model is called, read from YAML.

```yaml
retries: 2              # next-best models to try when the chosen model's upstream fails
route_on: last_user     # last_user | conversation: the text the router scores
timeout_s: 60           # default per-model timeout
models:
  gpt-4o:                                  # the router's model name
    base_url: https://api.openai.com/v1    # <base_url>/chat/completions is called
    api_key_env: OPENAI_API_KEY            # optional: sent as "Authorization: Bearer <key>"
    model: gpt-4o-2024-08-06               # optional: the upstream's model id (default: the name)
    timeout_s: 30                          # optional: overrides the top-level timeout_s
```

Defaults live in the dataclasses below and nowhere else. Unknown keys are rejected; every error names
the file and the key. Keys are read from the environment once, at startup (``api_keys``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

ROUTE_ON = ("last_user", "conversation")


@dataclass(frozen=True)
class Upstream:
    """One model's OpenAI-compatible endpoint."""

    name: str  # the router's model name
    base_url: str  # without the trailing /chat/completions
    model: str  # the id the upstream knows the model by
    api_key_env: str | None = None  # environment variable holding the bearer token
    timeout_s: float | None = None  # None: the map's timeout_s

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"


@dataclass(frozen=True)
class UpstreamMap:
    """Every configured upstream plus the gateway's fallback and routing settings."""

    models: Mapping[str, Upstream] = field(default_factory=lambda: MappingProxyType({}))
    retries: int = 2  # fallbacks after the chosen model: up to retries + 1 upstream calls
    route_on: str = "last_user"  # one of ROUTE_ON
    timeout_s: float = 60.0
    source: str = "<none>"  # the file it came from, for messages

    def timeout(self, name: str) -> float:
        own = self.models[name].timeout_s
        return self.timeout_s if own is None else own


_TOP_KEYS = {f.name for f in dataclasses.fields(UpstreamMap)} - {"source"}
_MODEL_KEYS = {f.name for f in dataclasses.fields(Upstream)} - {"name"}


def load_upstreams(path: str | Path) -> UpstreamMap:
    """Read and validate the YAML upstream map at ``path``; raises ValueError naming file, key and expectation."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the upstream map ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    return parse_upstreams(raw, str(path))


def parse_upstreams(raw: object, source: str) -> UpstreamMap:
    """The upstream map from already parsed YAML/JSON data (``source`` names it in errors)."""
    def bad(key: str, expected: str, value: object) -> ValueError:
        return ValueError(f"{source}: {key}: expected {expected}, got {value!r}")

    if not isinstance(raw, dict):
        raise bad("top level", "a mapping with a 'models' section", raw)
    unknown = sorted(set(map(str, raw)) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r}; valid keys: {sorted(_TOP_KEYS)}")
    defaults = UpstreamMap()
    retries = raw.get("retries", defaults.retries)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise bad("retries", "an integer >= 0", retries)
    route_on = raw.get("route_on", defaults.route_on)
    if route_on not in ROUTE_ON:
        raise bad("route_on", " or ".join(ROUTE_ON), route_on)
    timeout_s = _timeout(raw.get("timeout_s", defaults.timeout_s), bad, "timeout_s")
    models_raw = raw.get("models")
    if not isinstance(models_raw, dict) or not models_raw:
        raise bad("models", "a non-empty mapping {model name: {base_url: ...}}", models_raw)
    models = {}
    for name, entry in models_raw.items():
        key = f"models.{name}"
        if not isinstance(name, str) or not name:
            raise bad("models", "model names as non-empty strings", name)
        if not isinstance(entry, dict):
            raise bad(key, "a mapping with base_url (and optional api_key_env, model, timeout_s)", entry)
        unknown = sorted(set(map(str, entry)) - _MODEL_KEYS)
        if unknown:
            raise ValueError(f"{source}: {key}: unknown key {unknown[0]!r}; valid keys: {sorted(_MODEL_KEYS)}")
        base_url = entry.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise bad(f"{key}.base_url", "an http:// or https:// URL", base_url)
        upstream_id = entry.get("model", name)
        if not isinstance(upstream_id, str) or not upstream_id:
            raise bad(f"{key}.model", "the upstream's model id, a non-empty string", upstream_id)
        env = entry.get("api_key_env")
        if env is not None and (not isinstance(env, str) or not env):
            raise bad(f"{key}.api_key_env", "the name of an environment variable", env)
        own_timeout = entry.get("timeout_s")
        models[name] = Upstream(
            name=name, base_url=base_url.rstrip("/"), model=upstream_id, api_key_env=env,
            timeout_s=None if own_timeout is None else _timeout(own_timeout, bad, f"{key}.timeout_s"))
    return UpstreamMap(models=MappingProxyType(models), retries=retries, route_on=route_on,
                       timeout_s=timeout_s, source=source)


def _timeout(value: object, bad, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise bad(key, "a number of seconds > 0", value)
    return float(value)


def api_keys(upstreams: UpstreamMap, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """{model name: bearer token} for the models that name an ``api_key_env``, read now (at startup).

    A variable that is named but unset or empty raises ValueError listing every such model.
    """
    environ = os.environ if environ is None else environ
    keys, missing = {}, []
    for name, up in upstreams.models.items():
        if up.api_key_env is None:
            continue
        value = environ.get(up.api_key_env, "")
        if value:
            keys[name] = value
        else:
            missing.append(f"{up.api_key_env} (models.{name}.api_key_env)")
    if missing:
        raise ValueError(f"{upstreams.source}: environment variable not set: {', '.join(missing)}")
    return keys
