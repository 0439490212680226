"""The upstream map (router.serve.upstreams): a bad file is named with the key at fault; defaults, and an
API key variable that is not set."""

from __future__ import annotations

import pytest

from router.serve.upstreams import api_keys, load_upstreams


@pytest.mark.parametrize("text, message", [
    ("models: {a: {base_url: 'ftp://x'}}", "models.a.base_url: expected an http:// or https:// URL"),
    ("models: {a: {base_url: 'http://x', temperature: 1}}", "models.a: unknown key 'temperature'"),
    ("retries: -1\nmodels: {a: {base_url: 'http://x'}}", "retries: expected an integer >= 0"),
    ("route_on: everything\nmodels: {a: {base_url: 'http://x'}}", "route_on: expected last_user or conversation"),
    ("timeout_s: 0\nmodels: {a: {base_url: 'http://x'}}", "timeout_s: expected a number of seconds > 0"),
    ("models: []", "models: expected a non-empty mapping"),
    ("retry: 1\nmodels: {a: {base_url: 'http://x'}}", "unknown key 'retry'"),
    ("models: {a: [", "not valid YAML"),
])
def test_bad_upstream_maps_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "up.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="up.yaml") as info:
        load_upstreams(path)
    assert message in str(info.value)


def test_upstream_defaults_and_unset_key(tmp_path):
    path = tmp_path / "up.yaml"
    path.write_text("models:\n  a: {base_url: 'http://h/v1/', api_key_env: NO_SUCH_VAR_X}\n"
                    "  b: {base_url: 'http://h', timeout_s: 5}\n")
    umap = load_upstreams(path)
    assert (umap.retries, umap.route_on, umap.timeout("a"), umap.timeout("b")) == (2, "last_user", 60.0, 5.0)
    assert umap.models["a"].chat_url == "http://h/v1/chat/completions" and umap.models["a"].model == "a"
    with pytest.raises(ValueError, match=r"up.yaml: environment variable not set: NO_SUCH_VAR_X \(models.a"):
        api_keys(umap, {})
    assert api_keys(umap, {"NO_SUCH_VAR_X": "k"}) == {"a": "k"}
