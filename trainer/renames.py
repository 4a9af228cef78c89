"""Names that changed, so that each idea has one: the old ones still load, and are refused when written anew.

Checkpoints, exports and Hub downloads recorded class paths, init-arg names and state-dict keys
under the names of their day. Reading them, every old name is read as the new one
(:func:`current_class_path`, :func:`current_args`, :func:`current_state_dict`); a user's own config
or command line that writes an old name is refused with an error that names the new one
(:func:`check_renamed`, :func:`check_renamed_flags`), so old spellings do not spread. To rename
again, add the old name to these tables and nothing else.
"""

from __future__ import annotations

from typing import Any


#: Classes renamed since checkpoints and exports recorded them: old class path -> new. A recorded
#: old path is read as the new one (:func:`current_class_path`); a user's config that names an old
#: one is refused with the new name (:func:`check_renamed`), so each idea keeps one name.
RENAMED_CLASSES = {
    "trainer.selection.SelectorTrainer": "trainer.selector_module.SelectorModule",
    "trainer.scene.SceneBoundaryTrainer": "trainer.scene.SceneBoundaryModule",
}


def current_class_path(path: str) -> str:
    """``path`` under its current name (:data:`RENAMED_CLASSES`), else ``path``."""
    return RENAMED_CLASSES.get(path, path)


#: Init args renamed since checkpoints and exports recorded them: class path -> {old: new}. A
#: recorded old name is read as the new one (:func:`current_args`); a user's config or command line
#: that writes an old one is refused with the new name (:func:`check_renamed`, :func:`check_renamed_flags`).
RENAMED_ARGS: dict[str, dict[str, str]] = {
    # The importance model was the module's ``selector``, then its ``policy``.
    "trainer.selector_module.SelectorModule": {"selector": "importance", "policy": "importance"},
    # The selector whose scores the model reads is its teacher (it was called its ``cue``).
    "models.importance.ImportanceSelector": {"cue": "teacher"},
}
# Old names that no current class takes, so they are refused wherever they stand in an ``init_args``.
_RETIRED_ARGS = {"policy": "importance", "cue": "teacher"}
#: State-dict prefixes renamed with :data:`RENAMED_ARGS` (old -> new), per module class path.
RENAMED_PREFIXES: dict[str, dict[str, str]] = {
    "trainer.selector_module.SelectorModule": {"selector.": "importance.", "policy.": "importance."},
}
#: Keys of an export's ``selector/frame_selection.json`` renamed since exports wrote them (old -> new).
RENAMED_SELECTION_KEYS = {"cue": "teacher"}


def _renamed(values: dict[str, Any], renames: dict[str, str]) -> None:
    """Moves each old key of ``values`` to its new name, in place; a new name already there wins."""
    for old, new in renames.items():
        if old in values:
            value = values.pop(old)
            values.setdefault(new, value)


def current_selection(info: dict[str, Any]) -> dict[str, Any]:
    """An export's ``frame_selection.json`` with its keys under their current names (:data:`RENAMED_SELECTION_KEYS`)."""
    out = dict(info)
    _renamed(out, RENAMED_SELECTION_KEYS)
    return out


def current_args(recorded: Any) -> Any:
    """``recorded`` with every init arg renamed since it was written under its current name.

    Walks a recorded structure at every depth: a ``{"class_path": ..., "init_args": {...}}`` spec
    gets its ``init_args`` keys renamed, a checkpoint's flat ``{"_class_path": ..., **init_args}``
    its own keys (:data:`RENAMED_ARGS`; the class path itself by :func:`current_class_path`). A new
    name that is already there wins over the old one.
    """
    if isinstance(recorded, list):
        return [current_args(v) for v in recorded]
    if not isinstance(recorded, dict):
        return recorded
    out = {k: current_args(v) for k, v in recorded.items()}
    for key, args_key in (("class_path", "init_args"), ("_class_path", None)):
        if isinstance(out.get(key), str):
            out[key] = current_class_path(out[key])
            args = out if args_key is None else out.get(args_key)
            if isinstance(args, dict):
                _renamed(args, RENAMED_ARGS.get(out[key], {}))
    return out


def current_state_dict(class_path: str, state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` with the key prefixes renamed since it was written (:data:`RENAMED_PREFIXES`)."""
    renames = RENAMED_PREFIXES.get(current_class_path(class_path), {})
    out = {}
    for key, value in state_dict.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def check_renamed(config: Any, where: str, _path: str = "") -> None:
    """Refuses a config (the user's own YAML) that names a renamed class or init arg, naming the new one.

    Raises:
        ValueError: Naming ``where``, the key path, the old and the new name.
    """
    if isinstance(config, dict):
        args = config.get("init_args")
        if isinstance(args, dict):
            renames = dict(_RETIRED_ARGS)
            if isinstance(config.get("class_path"), str):
                renames.update(RENAMED_ARGS.get(current_class_path(config["class_path"]), {}))
            for old, new in renames.items():
                if old in args:
                    key = f"{_path}.init_args" if _path else "init_args"
                    raise ValueError(f"{where}: {key}.{old} was renamed {key}.{new}; write the new name "
                                     "(checkpoints and exports that recorded the old one still load)")  # fmt: skip
        for key, value in config.items():
            check_renamed(value, where, f"{_path}.{key}" if _path else str(key))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            check_renamed(value, where, f"{_path}[{i}]")
    elif isinstance(config, str) and config in RENAMED_CLASSES:
        raise ValueError(f"{where}: {_path or 'value'}: {config} was renamed {RENAMED_CLASSES[config]}; "
                         "write the new name (checkpoints that recorded the old one still load)")


def check_renamed_flags(args: list[str]) -> None:
    """Refuses a command-line override of a renamed init arg (``--model.init_args.policy...``), naming the new one.

    Raises:
        ValueError: Naming the flag and its new spelling.
    """
    for arg in args:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        parts = flag[2:].split(".")
        for i, part in enumerate(parts[1:], start=1):
            if parts[i - 1] == "init_args" and part in _RETIRED_ARGS:
                new = ".".join([*parts[:i], _RETIRED_ARGS[part], *parts[i + 1 :]])
                raise ValueError(f"{flag} was renamed --{new}; write the new name")
