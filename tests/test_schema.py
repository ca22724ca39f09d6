"""Selector schemas generated from signatures: composition-time typing, one-line errors, precheck."""

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional

import pytest
from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ValidationError

from selectkit import registry
from selectkit.errors import ConfigError
from selectkit.schema import (
    SCHEMA_GROUP,
    STAGE_KEYS,
    check_selector_config,
    precheck,
    register_schemas,
    selector_schema,
    validate_stage,
)
from selectkit.selection import Selection
from selectkit.selector import Selector

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SELECTOR_YAMLS = sorted(ROOT.glob("plugins/*/conf/selector/*.yaml")) + sorted(
    ROOT.glob("examples/selectkit-example-plugin/selectkit_example/conf/selector/*.yaml")
)
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__"))


def _compose(*overrides):
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _fields(schema):
    return {f.name: f for f in dataclasses.fields(schema)}


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _one_line_error(excinfo, pattern):
    message = str(excinfo.value)
    assert "\n" not in message, message
    assert pattern in message, message
    return message


# ------------------------------------------------------------------ selectors defined here


class _Typed(Selector):
    """A selector whose signature exercises every annotation the schema maps."""

    name = "schema_typed"

    def __init__(
        self,
        *,
        count: int,
        ratio: float = 0.5,
        flag: bool = False,
        label: str = "x",
        maybe: Optional[int] = None,
        either: int | str = 1,
        mapping: Mapping[str, Any] | None = None,
        items: List[int] = [1, 2],  # noqa: B006 - a list default is part of what is tested
        table: Dict[str, float] = {"a": 1.0},  # noqa: B006
        mode: Literal["a", "b"] = "a",
        untyped=3,
        opaque: object = object(),
    ) -> None:
        self.count, self.ratio, self.flag, self.label, self.maybe = count, ratio, flag, label, maybe
        self.either, self.mapping, self.items, self.table, self.mode = either, mapping, items, table, mode
        self.untyped, self.opaque = untyped, opaque

    def _select(self, pool, ctx):
        return Selection.all(len(pool))


class _Open(Selector):
    """A selector taking extra keyword settings."""

    name = "schema_open"

    def __init__(self, *, step: int = 2, **extra: Any) -> None:
        self.step = step

    def _select(self, pool, ctx):
        return Selection.all(len(pool))


class _Every(Selector):
    name = "schema_every"

    def __init__(self, *, every: int = 2) -> None:
        self.every = every

    def _select(self, pool, ctx):
        return Selection.all(len(pool))


class _Halves(Selector):
    """An out-of-tree selector: the first ``share`` of the pool, optionally from the end."""

    name = "schema_halves"

    def __init__(self, *, share: float = 0.5, from_end: bool = False) -> None:
        self.share = share
        self.from_end = from_end

    def _select(self, pool, ctx):
        return Selection.all(len(pool))


@pytest.fixture
def halves():
    """`_Halves` registered at run time (as a notebook or test would), removed afterwards."""
    registry.register()(_Halves)
    yield _Halves
    registry.unregister(_Halves.name)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ schema generation


@pytest.mark.parametrize("name", registry.available())
def test_schema_mirrors_each_installed_selector_signature(name):
    cls = registry.get(name)
    schema = selector_schema(cls)
    fields = _fields(schema)
    assert list(fields)[: len(STAGE_KEYS)] == list(STAGE_KEYS)
    assert fields["name"].default == cls.name
    assert fields["schedule"].default == getattr(cls, "default_schedule", "epoch")
    assert fields["every"].default == 1
    assert fields["start_epoch"].default == 0
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert list(schema.parameters) == [p.name for p in params] == list(fields)[len(STAGE_KEYS) :]
    for p in params:
        assert _default(fields[p.name]) == p.default, p.name
    assert schema.selector_class is cls


def test_annotations_map_to_what_omegaconf_holds():
    fields = _fields(selector_schema(_Typed))
    assert fields["count"].type is int and fields["count"].default == MISSING
    assert fields["ratio"].type is float and fields["flag"].type is bool and fields["label"].type is str
    assert fields["maybe"].type == Optional[int]
    assert fields["either"].type is Any, "unions OmegaConf cannot hold become Any"
    assert fields["mapping"].type is Any
    assert fields["items"].type == List[int] and _default(fields["items"]) == [1, 2]
    assert fields["table"].type == Dict[str, float]
    assert fields["mode"].type is str, "a Literal of strings is a string"
    assert fields["untyped"].type is Any and fields["untyped"].default == 3
    assert "opaque" not in fields, "a default OmegaConf cannot hold stays the selector's own"
    node = OmegaConf.structured(selector_schema(_Typed))
    node.either = "text"
    node.mapping = {"backend": "ivf"}
    node.maybe = None
    with pytest.raises(ValidationError):
        node.ratio = "abc"
    with pytest.raises(ValidationError):
        node.items = ["a"]
    assert OmegaConf.missing_keys(node) == {"count"}


def test_list_defaults_are_not_shared_between_configs():
    schema = selector_schema(_Typed)
    first, second = schema(count=1), schema(count=2)
    first.items.append(3)
    assert second.items == [1, 2]


def test_a_parameter_named_like_a_stage_setting_is_refused():
    with pytest.raises(TypeError, match="every"):
        selector_schema(_Every)


def test_open_signatures_accept_extra_keys_and_still_type_known_ones():
    registry.register()(_Open)
    try:
        typed = validate_stage({"name": "schema_open", "step": 3, "anything": [1]}, "selector")
        assert typed["step"] == 3 and typed["anything"] == [1]
        with pytest.raises(ConfigError, match=r"^selector\.step must be an integer, got 'x'$"):
            validate_stage({"name": "schema_open", "step": "x"}, "selector")
    finally:
        registry.unregister("schema_open")


# ------------------------------------------------------------------ ConfigStore


def test_register_schemas_is_idempotent_and_lists_every_installed_selector(halves):
    register_schemas()
    folder = ConfigStore.instance().repo["schema"]["selector"]
    register_schemas()
    assert ConfigStore.instance().repo["schema"]["selector"] is folder
    listed = ConfigStore.instance().list(SCHEMA_GROUP)
    assert listed == sorted(f"{n}.yaml" for n in registry.available())
    assert "schema_halves.yaml" in listed, "run-time registrations are listed as well"
    node = ConfigStore.instance().load(f"{SCHEMA_GROUP}/schema_halves.yaml").node
    assert OmegaConf.get_type(node) is selector_schema(_Halves)


def test_schemas_load_only_the_chosen_selector():
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_module\n"
        "with initialize_config_module('selectkit_conf', version_base='1.3'):\n"
        "    cfg = compose('train', overrides=['selector=rs2'])\n"
        "assert type(cfg.selector).__name__ == 'DictConfig'\n"
        "print(sorted(m for m in sys.modules if m.startswith('selectkit_plugins.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="disabled"))
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.strip()
    assert "selectkit_plugins.rs2" in loaded
    assert "selectkit_plugins.smote" not in loaded, loaded


# ------------------------------------------------------------------ compose time


def test_wrong_type_in_the_selector_group_fails_at_compose_time():
    with pytest.raises(ConfigCompositionException) as excinfo:
        _compose("selector=rs2", "selector.fraction=abc")
    assert isinstance(excinfo.value.__cause__, ValidationError)
    assert excinfo.value.__cause__.full_key == "selector.fraction"
    with pytest.raises(ConfigError) as excinfo:
        precheck(["selector=rs2", "selector.fraction=abc"])
    assert str(excinfo.value) == "selector.fraction must be a float, got 'abc'"


def test_unknown_key_in_the_selector_group_fails_at_compose_time():
    with pytest.raises(ConfigCompositionException) as excinfo:
        _compose("selector=rs2", "selector.fractoin=0.2")
    assert excinfo.value.__cause__.full_key == "selector.fractoin"
    settings = ", ".join(selector_schema(registry.get("rs2")).parameters)
    for argv in (["selector.fractoin=0.2"], ["+selector.fractoin=0.2"]):
        with pytest.raises(ConfigError) as excinfo:
            precheck(argv)
        assert str(excinfo.value) == f"selector.fractoin is not a setting of selector rs2; its settings: {settings}"


@pytest.mark.parametrize("pipeline", _options("pipeline"))
def test_pipeline_stages_are_typed_at_compose_time(pipeline):
    cfg = _compose(f"pipeline={pipeline}")
    for key, stage in cfg.pipeline.stages.items():
        assert OmegaConf.get_type(stage) is selector_schema(registry.get(stage.name)), key
        with pytest.raises(ConfigCompositionException):
            _compose(f"pipeline={pipeline}", f"pipeline.stages.{key}.every=abc")
        with pytest.raises(ConfigError) as excinfo:
            precheck([f"pipeline={pipeline}", f"pipeline.stages.{key}.every=abc"])
        assert str(excinfo.value) == f"pipeline.stages.{key}.every must be an integer, got 'abc'"
        with pytest.raises(ConfigError) as excinfo:
            precheck([f"pipeline={pipeline}", f"pipeline.stages.{key}.evry=2"])
        _one_line_error(excinfo, f"pipeline.stages.{key}.evry is not a setting of selector {stage.name}")


def test_stages_added_on_the_command_line_are_checked_by_precheck():
    with pytest.raises(ConfigError) as excinfo:
        precheck(["pipeline=random_then_rs2", "+pipeline.stages.extra={name: rs2, fractoin: 0.5}"])
    _one_line_error(excinfo, "pipeline.stages.extra.fractoin is not a setting of selector rs2")
    with pytest.raises(ConfigError) as excinfo:
        precheck(["pipeline=random_then_rs2", "+pipeline.stages.extra={name: rs2, fraction: abc}"])
    assert str(excinfo.value) == "pipeline.stages.extra.fraction must be a float, got 'abc'"
    with pytest.raises(ConfigError) as excinfo:
        precheck(["pipeline=random_then_rs2", "+pipeline.stages.extra={name: nosuch}"])
    _one_line_error(excinfo, "pipeline.stages.extra.name: unknown selector 'nosuch'")
    precheck(["pipeline=random_then_rs2", "+pipeline.stages.extra={name: full}"])


# ------------------------------------------------------------------ every shipped config


@pytest.mark.parametrize("path", SELECTOR_YAMLS, ids=lambda p: p.stem)
def test_selector_yamls_attach_their_schema_explicitly(path):
    raw = OmegaConf.load(path)
    assert f"/{SCHEMA_GROUP}/{path.stem}@_here_" in list(raw.defaults)
    assert list(raw.defaults)[-1] == "_self_"
    assert "name" not in raw and "every" not in raw, "stage settings come from the schema"


@pytest.mark.parametrize("name", registry.available())
def test_each_selector_yaml_composes_and_its_values_reach_the_selector(name):
    cfg = _compose(f"selector={name}")
    cls = registry.get(name)
    assert OmegaConf.get_type(cfg.selector) is selector_schema(cls)
    spec = OmegaConf.to_container(cfg.selector, resolve=True)
    assert spec["name"] == name
    params = {k: v for k, v in spec.items() if k not in STAGE_KEYS}
    assert registry.create(name, **params).get_params() == params
    yaml = next(p for p in SELECTOR_YAMLS if p.stem == name)
    written = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(yaml)).items() if k != "defaults"}
    assert {k: spec[k] for k in written} == written, "what the YAML says is what the selector gets"
    assert validate_stage(spec, "selector") == spec
    assert check_selector_config(name, yaml).get_params() == params


def test_selectors_that_create_samples_are_configured_to_run_once():
    for name in registry.available():
        cls = registry.get(name)
        schedule = _compose(f"selector={name}").selector.schedule
        assert schedule == getattr(cls, "default_schedule", "epoch")
        if cls.creates_samples:
            assert schedule == "once", f"selector={name} would try to create samples during training"


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes_with_its_schema(group):
    for option in _options(group):
        precheck([f"{group}={option}"])
        cfg = _compose(f"{group}={option}")
        if cfg.get("pipeline") is not None:
            stages = cfg.pipeline.stages
            for key in stages:
                spec = OmegaConf.to_container(stages[key], resolve=True)
                assert validate_stage(spec, f"pipeline.stages.{key}") == spec
        else:
            assert OmegaConf.get_type(cfg.selector) is selector_schema(registry.get(cfg.selector.name))


def test_pipeline_yamls_keep_their_stage_order_and_values():
    for pipeline in _options("pipeline"):
        raw = OmegaConf.to_container(OmegaConf.load(CONF / "pipeline" / f"{pipeline}.yaml"))
        cfg = _compose(f"pipeline={pipeline}")
        assert list(cfg.pipeline.stages) == list(raw["stages"])
        for key, written in raw["stages"].items():
            got = OmegaConf.to_container(cfg.pipeline.stages[key], resolve=True)
            assert {k: got[k] for k in written} == written


# ------------------------------------------------------------------ validate_stage


def test_validate_stage_fills_defaults_and_types_values():
    typed = validate_stage({"name": "rs2", "fraction": 1}, "pipeline.stages.rs2")
    cls = registry.get("rs2")
    defaults = {p.name: p.default for p in list(inspect.signature(cls.__init__).parameters.values())[1:]}
    assert typed == {"name": "rs2", "schedule": getattr(cls, "default_schedule", "epoch"), "every": 1, "start_epoch": 0, **defaults, "fraction": 1.0}
    assert isinstance(typed["fraction"], float)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "rs2", "fraction": "abc"}, "pipeline.stages.s.fraction must be a float, got 'abc'"),
        ({"name": "rs2", "every": 1.5}, "pipeline.stages.s.every must be an integer, got 1.5"),
        ({"name": "rs2", "fractoin": 0.2}, "pipeline.stages.s.fractoin is not a setting of selector rs2; its settings: "),
        ({"name": "full", "fraction": 0.2}, "pipeline.stages.s.fraction is not a setting of selector full; its settings: name, schedule, every"),
        ({"name": "nosuch"}, "pipeline.stages.s.name: unknown selector 'nosuch'; installed selectors: "),
        ({"fraction": 0.2}, "pipeline.stages.s.name must name a selector"),
        ("rs2", "pipeline.stages.s must map name (a selector) and its settings"),
    ],
)
def test_validate_stage_names_the_setting_in_one_line(spec, message):
    with pytest.raises(ConfigError) as excinfo:
        validate_stage(spec, "pipeline.stages.s")
    assert str(excinfo.value).startswith(message) and "\n" not in str(excinfo.value)


def test_a_required_setting_without_value_is_named():
    registry.register()(_Typed)
    try:
        with pytest.raises(ConfigError, match=r"^selector\.count is required by selector schema_typed; set it$"):
            validate_stage({"name": "schema_typed"}, "selector")
        typed = validate_stage({"name": "schema_typed", "count": 2, "either": "two"}, "selector")
        assert typed["count"] == 2 and typed["either"] == "two" and "opaque" not in typed
    finally:
        registry.unregister("schema_typed")


# ------------------------------------------------------------------ out-of-tree selectors


def test_a_selector_registered_at_run_time_gets_a_schema(halves, tmp_path):
    conf = tmp_path / "conf"
    good = _write(conf / "selector" / "halves.yaml", "defaults:\n  - /schema/selector/schema_halves@_here_\n  - _self_\nshare: 0.25\n")
    _write(conf / "selector" / "halves_typo.yaml", "defaults:\n  - /schema/selector/schema_halves@_here_\n  - _self_\nshaer: 0.25\n")
    precheck([f"hydra.searchpath=[file://{conf}]", "selector=halves", "selector.from_end=true"])
    with pytest.raises(ConfigError) as excinfo:
        precheck([f"hydra.searchpath=[file://{conf}]", "selector=halves", "selector.share=most"])
    assert str(excinfo.value) == "selector.share must be a float, got 'most'"
    with pytest.raises(ConfigError) as excinfo:
        precheck(["--config-dir", str(conf), "selector=halves_typo"])
    assert str(excinfo.value) == "selector.shaer is not a setting of selector schema_halves; its settings: share, from_end"
    with pytest.raises(ConfigError) as excinfo:
        precheck([f"-cd={conf}", "selector=halves", "selector.from_end=sometimes"])
    _one_line_error(excinfo, "selector.from_end must be true or false, got 'sometimes'")
    with pytest.raises(ConfigError) as excinfo:
        precheck(["selector=halves"])
    _one_line_error(excinfo, "selector=halves is not an option of selector; options: ")
    selector = check_selector_config("schema_halves", good)
    assert isinstance(selector, _Halves) and selector.get_params() == {"share": 0.25, "from_end": False}


def test_check_selector_config_tells_a_plugin_author_what_to_fix(halves, tmp_path):
    plain = _write(tmp_path / "conf" / "selector" / "plain.yaml", "name: schema_halves\nshare: 0.25\n")
    with pytest.raises(AssertionError, match=r"/schema/selector/schema_halves@_here_"):
        check_selector_config("schema_halves", plain)
    typo = _write(tmp_path / "conf" / "selector" / "typo.yaml", "defaults:\n  - /schema/selector/schema_halves@_here_\n  - _self_\nshaer: 1\n")
    with pytest.raises(ConfigError, match=r"shaer is not a setting of selector schema_halves"):
        check_selector_config("schema_halves", typo)
    other = _write(tmp_path / "conf" / "selector" / "other.yaml", "defaults:\n  - /schema/selector/rs2@_here_\n  - _self_\n")
    with pytest.raises(AssertionError, match="not typed by the schema of selector 'schema_halves'"):
        check_selector_config("schema_halves", other)


def test_a_defaults_list_naming_an_uninstalled_selector_says_so(tmp_path):
    conf = tmp_path / "conf"
    _write(conf / "selector" / "ghost.yaml", "defaults:\n  - /schema/selector/ghost@_here_\n  - _self_\n")
    with pytest.raises(ConfigError) as excinfo:
        precheck(["-cd", str(conf), "selector=ghost"])
    _one_line_error(excinfo, "no selector 'ghost' is installed")


# ------------------------------------------------------------------ precheck


def test_precheck_checks_every_sweep_value_with_multirun():
    precheck(["-m", "selector=rs2,random", "selector.fraction=0.3"])
    with pytest.raises(ConfigError) as excinfo:
        precheck(["-m", "selector=rs2,full", "selector.fraction=0.3"])
    _one_line_error(excinfo, "selector.fraction is not a setting of selector full")
    with pytest.raises(ConfigError) as excinfo:
        precheck(["--multirun", "seed=0,1", "selector.fraction=0.2,0.3,abc"])
    assert str(excinfo.value) == "selector.fraction must be a float, got 'abc'"
    with pytest.raises(ConfigError) as excinfo:
        precheck(["-m", "pipeline=random_then_rs2,smote_rs2", "pipeline.stages.smote.k_neighbors=many"])
    assert "pipeline.stages.smote" in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        precheck(["-m", "selector=rs2,full", "selector.fraction=0.2,0.3"])
    _one_line_error(excinfo, "selector.fraction is not a setting of selector full")
    with pytest.raises(ConfigError) as excinfo:
        precheck(["-m", "+selector.fractoin=0.2,0.3"])
    _one_line_error(excinfo, "selector.fractoin is not a setting of selector rs2")
    precheck(["-m", "seed=range(0,3)", "hydra/launcher=local", "selector.class_balanced=false,true"])


def test_precheck_needs_multirun_for_a_sweep():
    with pytest.raises(ConfigError) as excinfo:
        precheck(["selector=rs2,full"])
    _one_line_error(excinfo, "--multirun")


@pytest.mark.parametrize(
    "argv, start",
    [
        (["selector=nosuch"], "selector=nosuch is not an option of selector; options: "),
        (["data=nosuch"], "data=nosuch is not an option of data; options: " + ", ".join(_options("data"))),
        (["selector.fraction=[1,2"], "cannot parse the override 'selector.fraction=[1,2'"),
        (["selector=full", "selector.every=often"], "selector.every must be an integer, got 'often'"),
    ],
)
def test_precheck_errors_are_one_line_naming_the_key(argv, start):
    with pytest.raises(ConfigError) as excinfo:
        precheck(argv)
    assert str(excinfo.value).startswith(start) and "\n" not in str(excinfo.value)


def test_precheck_ignores_hydra_settings_and_flags():
    precheck(["--cfg", "job", "-p", "selector", "hydra.job.chdir=true", "hydra/launcher=local", "selector=full"])
    precheck(["--help"])
    precheck(["--info", "defaults", "selector=rs2"])


def test_precheck_prints_nothing(capfd):
    precheck(["selector=rs2"])
    with pytest.raises(ConfigError):
        precheck(["selector.fraction=abc"])
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_precheck_inside_an_initialised_hydra_leaves_it_as_it_was():
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        before = GlobalHydra.instance().hydra
        precheck(["selector=random"])
        with pytest.raises(ConfigError):
            precheck(["selector.fraction=abc"])
        assert GlobalHydra.instance().hydra is before
        assert compose("train", overrides=["selector=full"]).selector.name == "full"
    assert not GlobalHydra.instance().is_initialized()


def test_the_example_plugin_config_is_typed_by_its_schema(tmp_path):
    example = ROOT / "examples" / "selectkit-example-plugin"
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(example)],
        check=True,
    )
    code = (
        "from selectkit.errors import ConfigError\n"
        "from selectkit.schema import check_selector_config, precheck\n"
        f"print(check_selector_config('stride', {str(example / 'selectkit_example/conf/selector/stride.yaml')!r}).step)\n"
        "precheck(['selector=stride', 'selector.step=3'])\n"
        "for argv in (['selector=stride', 'selector.step=abc'], ['selector=stride', 'selector.stpe=5']):\n"
        "    try:\n"
        "        precheck(argv)\n"
        "    except ConfigError as err:\n"
        "        print(err)\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", WANDB_MODE="disabled")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "10",
        "selector.step must be an integer, got 'abc'",
        "selector.stpe is not a setting of selector stride; its settings: step",
    ]
