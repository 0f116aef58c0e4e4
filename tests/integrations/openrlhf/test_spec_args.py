"""Our launcher flags: parsing, defaults owned by spec_config, aliases, clear errors."""

import math

import pytest

from integrations.openrlhf.spec_args import SpecArgError, SpecSettings, spec_parser, split_argv
from specrl_sglang.spec_config import DEFAULT_LENIENCE, DEFAULT_MODE


def test_split_argv_takes_our_flags_and_leaves_openrlhfs():
    args = split_argv(["--actor.model_name_or_path", "m", "--rollout.backend", "sglang-spec", "--spec.lenience", "inf",
                       "--spec.group_window_ms", "5", "--spec.ray_object_store_mb", "200",
                       "--rollout.n_samples_per_prompt", "8"])
    assert args.backend == "sglang-spec" and math.isinf(args.settings.lenience) and args.settings.group_window_s == 0.005
    assert args.ray_object_store_mb == 200
    assert args.openrlhf_argv == ["--actor.model_name_or_path", "m", "--rollout.n_samples_per_prompt", "8"]
    assert args.spec_flags == ["--spec.group_window_ms", "--spec.lenience"]


def test_defaults_come_from_spec_config():
    args = split_argv([])
    assert args.backend == "vllm" and args.settings == SpecSettings() and args.spec_flags == []
    assert args.settings.mode == DEFAULT_MODE and args.settings.lenience == DEFAULT_LENIENCE
    help_text = spec_parser().format_help()
    assert f"{DEFAULT_LENIENCE:.4f}" in help_text and "--spec.mode" in help_text and "--spec.disable" in help_text


@pytest.mark.parametrize("argv, mode", [([], "spec-rl"), (["--spec.mode", "exact"], "exact"),
                                        (["--spec.mode", "vanilla"], "vanilla"), (["--spec.disable"], "vanilla"),
                                        (["--spec.disable", "--spec.mode", "vanilla"], "vanilla")])
def test_mode_flag_and_its_disable_alias(argv, mode):
    settings = split_argv(["--rollout.backend", "sglang-spec", *argv]).settings
    assert settings.mode == mode and settings.spec_config(3).mode == mode and settings.spec_config(3).seed == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rollout.backend", "sglang-spec", "--spec.lenincee", "2"], "unknown flag"),
        (["--rollout.backend", "sglang-spec", "--spec.lenience", "0.5"], "lenience must be >= 1"),
        (["--rollout.backend", "sglang-spec", "--spec.disable", "--spec.mode", "exact"], "contradicts"),
        (["--rollout.backend", "sglang-spec", "--spec.mode", "fast"], "see the message above"),
        (["--rollout.backend", "sglang-spec", "--spec.engine_kwargs", "[1]"], "JSON object"),
        (["--rollout.backend", "sglang-spec", "--spec.group_window_ms", "-1"], "group_window_ms must be >= 0"),
    ],
)
def test_bad_flags_get_clear_errors(argv, message):
    with pytest.raises(SpecArgError, match=message):
        split_argv(argv)


def test_sglang_urls_comma_separated_or_repeated():
    args = split_argv(["--rollout.backend", "sglang-spec", "--spec.sglang_urls", "http://127.0.0.1:30000,http://h:30001/",
                       "--spec.sglang_urls", "http://h:30002", "--spec.sglang_staging_dir", "/shared/stage"])
    assert args.settings.sglang_urls == ("http://127.0.0.1:30000", "http://h:30001/", "http://h:30002")
    assert args.settings.sglang_staging_dir == "/shared/stage" and args.openrlhf_argv == []
    assert split_argv([]).settings.sglang_urls == ()
    assert "--spec.sglang_urls" in spec_parser().format_help()


def test_sglang_router_flag():
    args = split_argv(["--spec.sglang_urls", "http://h:30001,http://h:30002", "--spec.sglang_router", "http://r:30000"])
    assert args.settings.sglang_router == "http://r:30000" and args.spec_flags == ["--spec.sglang_router", "--spec.sglang_urls"]
    assert split_argv([]).settings.sglang_router is None
    assert "--spec.sglang_router" in spec_parser().format_help()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--spec.sglang_urls", "127.0.0.1:30000"], "--spec.sglang_urls: .*must start with http://"),
        (["--spec.sglang_urls", "http://h:30000,http://h:30000/"], "--spec.sglang_urls: workers must be distinct"),
        (["--spec.sglang_urls", "http://h:port"], "needs a numeric port"),
        (["--spec.sglang_urls", ","], "needs at least one URL"),
        (["--spec.sglang_urls", "http://h:1", "--spec.max_total_tokens", "512", "--spec.engine_profile", "cpu"],
         "--spec.engine_profile, --spec.max_total_tokens: engine settings do not apply with --spec.sglang_urls"),
        (["--spec.sglang_staging_dir", "/tmp/x"], "--spec.sglang_staging_dir only applies with --spec.sglang_urls"),
        (["--spec.sglang_router", "http://r:1"], "--spec.sglang_router only applies with --spec.sglang_urls"),
        (["--spec.sglang_urls", "http://h:1", "--spec.sglang_router", "r:2"], "--spec.sglang_router: .*must start with http://"),
        (["--spec.sglang_urls", "http://h:1", "--spec.sglang_router", "http://h:1/"], "--spec.sglang_router: "),
    ],
)
def test_bad_sglang_server_flags_get_clear_errors(argv, message):
    with pytest.raises(SpecArgError, match=message):
        split_argv(["--rollout.backend", "sglang-spec", *argv])
